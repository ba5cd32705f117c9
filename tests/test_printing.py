"""Printers (enosprov.printing) against real sockets, a stand-in `lp` and files; `qr print`,
and `--printer` of `qr batch` and `replace`."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time

import pytest
from conftest import meters_rows

from enosprov import api
from enosprov.core.reprint import print_labels
from enosprov.errors import EXIT_PRINTER, InvalidArgumentError, PrinterError
from enosprov.printing import open_printer, parse_host_status, public_uri
from enosprov.qr.payload import parse_payload
from enosprov.qr.unit import render_unit_label
from enosprov.qr.zpl import zpl_unescape

# ~HS replies as the ZPL II Programming Guide documents them: three <STX>...<ETX><CR><LF> strings.
HS_OK = (
    b"\x02030,0,0,0290,000,0,0,0,000,0,0,0\x03\r\n"
    b"\x02001,0,0,0,1,2,4,0,00000000,1,000\x03\r\n"
    b"\x021234,0\x03\r\n"
)
HS_PAPER_OUT = HS_OK.replace(b"\x02030,0,0,", b"\x02030,1,0,")
HS_HEAD_OPEN_RIBBON_OUT = HS_OK.replace(b"\x02001,0,0,0,", b"\x02001,0,1,1,")


class Listener:
    """A TCP printer on 127.0.0.1: records what each connection sent (``jobs``), answers ``~HS``
    with ``status`` (None: never answers it). ``mode``: "print" reads to the end and closes;
    "close-early" reads ``keep`` bytes and closes."""

    def __init__(self, status: bytes | None = HS_OK, mode: str = "print", keep: int = 120):
        self.status = status
        self.mode = mode
        self.keep = keep
        self.jobs: list[bytes] = []
        self.queries = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.uri = f"tcp://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._one(conn)

    def _one(self, conn) -> None:
        conn.settimeout(5)
        data = b""
        try:
            if self.mode == "close-early":
                while len(data) < self.keep:
                    chunk = conn.recv(self.keep - len(data))
                    if not chunk:
                        break
                    data += chunk
                self.jobs.append(data)
                return  # closes with the rest unread: a reset
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                if data == b"~HS":
                    self.queries += 1
                    if self.status is not None:
                        conn.sendall(self.status)
                    else:
                        time.sleep(1)  # never answers in time
                    return
        except OSError:
            return
        self.jobs.append(data)

    def labels(self) -> list[str]:
        """The QR payload of every label received, in order."""
        out = []
        for job in self.jobs:
            out += [zpl_unescape(m) for m in re.findall(r"\^BQN,2,\d+\^FH_\^FD[HQML]A,([^^]*)\^FS",
                                                        job.decode("ascii"))]  # fmt: skip
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def printer_listener():
    listeners = []

    def make(**kw) -> Listener:
        lst = Listener(**kw)
        listeners.append(lst)
        return lst

    yield make
    for lst in listeners:
        lst.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registered5(backend, group, write_csv):
    api.register_csv(backend, write_csv(meters_rows(5)), group.group_id, batch_tag="B-1")
    return group


# -- the printer API ------------------------------------------------------------------------------


def test_tcp_sends_exactly_the_bytes_and_reads_status(printer_listener):
    lst = printer_listener()
    printer = open_printer(lst.uri)
    assert (printer.label_format, printer.uri) == ("zpl", lst.uri)
    assert printer.status() is None
    data = b"^XA\n^FO1,1^FDx^FS\n^XZ\n" * 100
    printer.send(data, what="SN-1")
    printer.send(b"^XA^XZ", what="SN-2")
    printer.close()
    deadline = time.monotonic() + 2
    while len(lst.jobs) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lst.jobs == [data, b"^XA^XZ"]  # one connection per label, nothing added


def test_status_reports_paper_out_and_others(printer_listener):
    assert open_printer(printer_listener(status=HS_PAPER_OUT).uri).status() == "paper out"
    both = open_printer(printer_listener(status=HS_HEAD_OPEN_RIBBON_OUT).uri).status()
    assert both == "head open, ribbon out"
    assert parse_host_status(HS_OK.replace(b"\x02030,0,0,", b"\x02030,0,1,")) == "paused"
    assert parse_host_status(b"") is None and parse_host_status(b"\x02garbage\x03") is None


def test_status_never_blocks_longer_than_its_timeout(printer_listener):
    silent = printer_listener(status=None)
    printer = open_printer(silent.uri)
    t0 = time.monotonic()
    assert printer.status(timeout=0.2) is None
    assert time.monotonic() - t0 < 0.6
    closed = open_printer(f"tcp://127.0.0.1:{_free_port()}")
    assert closed.status(timeout=0.2) is None


def test_refused_connection_is_one_clear_error():
    port = _free_port()
    with pytest.raises(PrinterError) as err:
        open_printer(f"tcp://127.0.0.1:{port}").send(b"^XA^XZ", what="SN-1")
    assert (
        err.value.message == f"label not printed: printer 127.0.0.1:{port} refused the connection"
    )
    assert err.value.code == "printer_failed" and err.value.exit_code == EXIT_PRINTER == 6
    assert err.value.what == "SN-1"


@pytest.mark.skipif(sys.platform == "win32", reason="Windows refuses a connection to a full queue")
def test_a_printer_that_never_answers_times_out():
    # A full accept queue: the kernel drops the next connection attempt, as a dead host does.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.05)
        printer = open_printer(f"tcp://127.0.0.1:{port}", timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(PrinterError, match=r"did not answer within 0\.3 s"):
            printer.send(b"^XA^XZ", what="SN-1")
        assert time.monotonic() - t0 < 2
    finally:
        for c in fillers:
            c.close()
        server.close()


def test_a_printer_that_closes_early_is_an_error(printer_listener):
    lst = printer_listener(mode="close-early", keep=120)
    printer = open_printer(lst.uri)
    with pytest.raises(PrinterError) as err:
        printer.send(b"^XA" + b"x" * 2042 + b"^XZ", what="SN-1")  # 2,048 bytes
    assert re.fullmatch(
        rf"label not printed: printer 127\.0\.0\.1:{lst.port} closed the connection "
        r"(before taking all 2,048 bytes|after [\d,]+ of 2,048 bytes)",
        err.value.message,
    ), err.value.message
    big = b"x" * (32 << 20)  # more than the socket buffers hold: it stops mid-way
    with pytest.raises(
        PrinterError, match=r"closed the connection (after [\d,]+|before taking all)"
    ):
        printer.send(big, what="SN-2")


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("", "no printer"),
        ("usb://zebra", "not a printer URI"),
        ("zebra", "not a printer URI"),
        ("tcp://", "no host"),
        ("tcp://h:99999", "out of range"),
        ("tcp://h:9100/x", "only a host and a port"),
        ("lp:", "not a print queue"),
        ("lp:-o evil", "not a print queue"),
        ("file:labels.txt", "extension"),
        ("file:", "no file"),
    ],
)
def test_bad_uris_are_one_clear_error(uri, match):
    with pytest.raises(InvalidArgumentError, match=match):
        open_printer(uri)


def test_credentials_never_shown():
    with pytest.raises(InvalidArgumentError) as err:
        open_printer("tcp://admin:hunter2@10.0.0.5:9100")
    assert "hunter2" not in err.value.message and "10.0.0.5" in err.value.message
    assert public_uri("tcp://admin:hunter2@10.0.0.5:9100") == "tcp://10.0.0.5:9100"
    assert public_uri("lp:zebra") == "lp:zebra"


@pytest.fixture
def fake_lp(tmp_path, monkeypatch):
    """A stand-in `lp` first on PATH: records its arguments and keeps a copy of the file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    spool = tmp_path / "spool"
    spool.mkdir()
    script = bin_dir / "lp"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, shutil, sys, pathlib\n"
        f"spool = pathlib.Path({str(spool)!r})\n"
        "n = len(list(spool.glob('*.json')))\n"
        "if sys.argv[2] == 'missing':\n"
        "    print('lp: The printer or class does not exist.', file=sys.stderr); sys.exit(1)\n"
        "(spool / f'{n}.json').write_text(json.dumps(sys.argv[1:]))\n"
        "shutil.copy(sys.argv[-1], spool / f'{n}.pdf')\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    return spool


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in lp is a script with a #! line")
def test_lp_prints_the_pdf_through_lp(fake_lp):
    printer = open_printer("lp:zebra")
    assert printer.label_format == "pdf" and printer.status() is None
    printer.send(b"%PDF-1.4 one", what="SN-1")
    args = json.loads((fake_lp / "0.json").read_text())
    assert args[:2] == ["-d", "zebra"] and len(args) == 3
    assert (fake_lp / "0.pdf").read_bytes() == b"%PDF-1.4 one"
    assert not os.path.exists(args[2])  # the temporary file is removed
    with pytest.raises(PrinterError, match=r"lp -d missing exited with 1: lp: The printer"):
        open_printer("lp:missing").send(b"%PDF", what="SN-2")


def test_lp_missing_from_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InvalidArgumentError, match="lp command is not on PATH"):
        open_printer("lp:zebra")


def test_file_printers(tmp_path):
    zpl = open_printer(f"file:{tmp_path / 'spool' / 'labels.zpl'}")
    assert zpl.label_format == "zpl"
    zpl.send(b"^XA1^XZ", what="a")
    zpl.send(b"^XA2^XZ", what="b")
    assert (tmp_path / "spool" / "labels.zpl").read_bytes() == b"^XA1^XZ^XA2^XZ"  # appended
    (tmp_path / "label-0002.pdf").write_bytes(b"someone else's")
    pdf = open_printer(f"file:{tmp_path / 'label.pdf'}")
    assert pdf.label_format == "pdf"
    pdf.send(b"%PDF a", what="a")
    pdf.send(b"%PDF b", what="b")
    assert (tmp_path / "label-0002.pdf").read_bytes() == b"someone else's"  # never overwritten
    assert (tmp_path / "label-0003.pdf").read_bytes() == b"%PDF a"
    assert (tmp_path / "label-0004.pdf").read_bytes() == b"%PDF b"
    assert open_printer(f"file:{tmp_path / 'x.PNG'}").label_format == "png"
    assert open_printer(f"file:{tmp_path / 'x.svg'}").label_format == "svg"


# -- one unit's label -----------------------------------------------------------------------------


def test_render_unit_label_formats_and_sheet_refused(backend, registered5):
    import io

    from PIL import Image

    from enosprov.qr.render import decode_texts

    dev = backend.find_by_device_sn("meters-eu", "SN-000002")
    zpl = render_unit_label(backend, "meters-eu", "SN-000002", label_format="zpl").decode()
    assert zpl.count("^XA") == 1 and "SN-000002" in zpl
    pdf = render_unit_label(backend, registered5, dev, label_format="pdf")
    assert pdf.startswith(b"%PDF")
    png = render_unit_label(backend, registered5, dev, label_format="png")
    (text,) = decode_texts(Image.open(io.BytesIO(png)))
    assert parse_payload(text).sn == dev.sn
    assert b"<svg" in render_unit_label(backend, registered5, dev, label_format="svg")
    with pytest.raises(InvalidArgumentError, match="sheet of 3 x 8") as err:
        render_unit_label(backend, registered5, dev, label_format="pdf", template="a4-3x8-70x37")
    assert "thermal-62mm" in err.value.hint and "thermal-4x6in" in err.value.hint


# -- qr print -------------------------------------------------------------------------------------


def test_print_labels_in_order_and_journaled(store, tmp_path, write_csv, printer_listener):
    from conftest import make_group

    from enosprov.journal import Actor, Journal

    make_group(store)
    api.register_csv(store, write_csv(meters_rows(5)), "meters-eu", batch_tag="B-1")
    lst = printer_listener()
    jr = Journal(tmp_path / "journal.db", Actor.current("local", station="T-1"))
    sn3 = store.find_by_device_sn("meters-eu", "SN-000003").sn
    report = print_labels(store, ["SN-000004", sn3, "SN-000001"], lst.uri, journal=jr)
    assert report.ok and report.printed == 3
    assert [parse_payload(t).device_sn for t in lst.labels()] == ["SN-000004", "SN-000003",
                                                                  "SN-000001"]  # fmt: skip
    (entry,) = jr.entries()
    assert entry.operation == "label-export" and entry.outcome == "ok"
    assert entry.detail["printer"] == lst.uri and entry.detail["printed"] == 3
    assert sorted(d for _, d in entry.devices) == ["SN-000001", "SN-000003", "SN-000004"]
    jr.close()


def test_paper_out_prints_nothing(store, write_csv, printer_listener):
    from conftest import make_group

    make_group(store)
    api.register_csv(store, write_csv(meters_rows(2)), "meters-eu")
    lst = printer_listener(status=HS_PAPER_OUT)
    report = print_labels(store, ["SN-000001", "SN-000002"], lst.uri)
    assert not report.ok and report.status == "paper out" and lst.jobs == []
    assert {r.error for r in report.results} == {
        f"label not printed: printer 127.0.0.1:{lst.port} reports paper out"
    }


def test_cli_qr_print_exit_codes_and_json(cli, backend, registered5, printer_listener):
    lst = printer_listener()
    ok = cli.json("qr", "print", "SN-000001", "SN-000002", "--printer", lst.uri)["data"]
    assert (ok["printed"], ok["failed"]) == (2, 0)
    assert [r["printed"] for r in ok["results"]] == [True, True]
    refused = f"tcp://127.0.0.1:{_free_port()}"
    bad = cli.json("qr", "print", "SN-000001", "SN-000002", "--printer", refused, expect=6)
    results = bad["data"]["results"]
    assert "refused the connection" in results[0]["error"]
    assert results[1]["error"] == "not sent: the printer failed on SN-000001"
    text = cli("qr", "print", "SN-000003", "--printer", refused)
    assert text.exit_code == 6 and "refused the connection" in text.stdout
    assert "enosprov qr print SN-000003" in text.stderr
    unknown = cli.json("qr", "print", "NOPE-1", "--printer", lst.uri, expect=1)
    assert unknown["error"]["code"] == "not_found"
    sheet = cli.json("qr", "print", "SN-000001", "--printer", lst.uri, "--label-template",
                     "a4-3x8-70x37", expect=1)  # fmt: skip
    assert "single-label" in sheet["error"]["message"]
    assert len(lst.labels()) == 2  # nothing more was sent


# -- qr batch --printer and replace --printer -----------------------------------------------------


def test_qr_batch_sends_every_label_in_order(backend, registered5, tmp_path, printer_listener):
    from enosprov.burn.export import Selection
    from enosprov.qr.batch import qr_batch

    lst = printer_listener()
    out = tmp_path / "labels"
    report = qr_batch(backend, Selection(group="meters-eu"), out, printer=lst.uri,
                      order="device-sn")  # fmt: skip
    assert report.format == "zpl" and report.printing.ok and report.printing.printed == 5
    rows = json.loads((out / "manifest.json").read_text())
    assert lst.labels() == [r["payload"] for r in rows]  # the order of the file
    assert [r["deviceSn"] for r in rows] == [f"SN-{i:06d}" for i in range(1, 6)]
    assert (out / "labels-meters-eu.zpl").read_bytes() == b"".join(lst.jobs)
    with pytest.raises(InvalidArgumentError, match="does not match the printer"):
        qr_batch(backend, Selection(group="meters-eu"), out, fmt="pdf", printer=lst.uri)


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in lp is a script with a #! line")
def test_cli_qr_batch_sheet_through_lp(cli, backend, registered5, tmp_path, fake_lp):
    out = tmp_path / "sheet"
    data = cli.json("qr", "batch", "--group", "meters-eu", "--batch-tag", "B-1", "--out",
                    str(out), "--printer", "lp:office")["data"]  # fmt: skip
    assert data["format"] == "pdf" and data["printing"]["printed"] == 5
    assert (fake_lp / "0.pdf").read_bytes() == (out / "labels-B-1.pdf").read_bytes()
    assert not (fake_lp / "1.pdf").exists()  # the sheet went as one job


def test_cli_qr_batch_printer_failure_exit_code(cli, backend, registered5, tmp_path):
    out = tmp_path / "labels"
    res = cli("qr", "batch", "--group", "meters-eu", "--out", str(out), "--printer",
              f"tcp://127.0.0.1:{_free_port()}", "--json")  # fmt: skip
    assert res.exit_code == 6
    data = json.loads(res.stdout)["data"]
    assert data["printing"]["failed"] == 5 and (out / "labels-meters-eu.zpl").is_file()


def test_cli_replace_prints_the_new_units_label(cli, backend, registered5, tmp_path,
                                                printer_listener):  # fmt: skip
    lst = printer_listener()
    out = tmp_path / "new"
    data = cli.json("replace", "SN-000002", "--new-device-sn", "SN-900002", "--out", str(out),
                    "--dps-url", "http://dps.example", "--label-template", "thermal-62mm",
                    "--printer", lst.uri, "--yes")["data"]  # fmt: skip
    assert data["printing"]["printed"] == 1
    assert [parse_payload(t).device_sn for t in lst.labels()] == ["SN-900002"]
    assert (out / "labels" / "SN-900002.pdf").is_file()
    sheet = cli.json("replace", "SN-000003", "--new-device-sn", "SN-900003", "--out", str(out),
                     "--dps-url", "http://dps.example", "--label-template", "a4-3x8-70x37",
                     "--printer", lst.uri, "--yes", expect=1)  # fmt: skip
    assert "single-label" in sheet["error"]["message"]
    assert cli.json("devices", "show", "SN-000003")["data"]["deviceSn"] == "SN-000003"
