"""The domain layer: what enosprov knows about EnOS provisioning, with no storage and no I/O
beyond reading a CSV or a master-data file.

Models (:mod:`.models`), errors (:mod:`.errors`), the rules a deviceSn, a product key or a
timezone must follow (:mod:`.rules`), master-data definitions (:mod:`.masterdata_file`), CSV
input (:mod:`.csvsource`, :mod:`.csvsafe`), request and device signatures (:mod:`.signing`) and
secret generation (:mod:`.secrets_gen`). Nothing here imports from the layers above it
(backends, core workflows, api, cli): tests/test_layers.py checks it.
"""
