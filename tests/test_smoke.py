from conftest import METERS_HEADER, meters_rows


def test_register_smoke(cli, backend, group, write_csv):
    path = write_csv(meters_rows(3))
    out = cli.json("register", "--csv", str(path), "--group", "meters-eu")
    assert out["data"]["created"] == 3
    assert METERS_HEADER.startswith("deviceSn")
