"""RegistrySource as a build opens it (``transports.open_source``): a base the cache serves costs
no registry client, hence no HTTP stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# A fresh interpreter: this one has loaded httpx long ago. The base is in the cache by digest,
# so --pull=missing asks the registry nothing (127.0.0.1:9 would refuse it if it did).
SERVED_FROM_CACHE = """
import sys
from pathlib import Path

from zeroimage.oci import Descriptor, Manifest, sha256_digest
from zeroimage.oci import mediatypes as mt
from zeroimage.store import BlobStore
from zeroimage.transports import TransportOptions, open_source, parse_source

config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
config_desc = Descriptor(mt.OCI_CONFIG, sha256_digest(config), len(config))
raw = Manifest(config=config_desc, layers=()).to_bytes()
root = Descriptor(mt.OCI_MANIFEST, sha256_digest(raw), len(raw))
store = BlobStore(Path(sys.argv[1]))
store.put_document(root, raw)
store.put_document(config_desc, config)
options = TransportOptions(store=store, pull="missing")
source = open_source(parse_source(f"docker://127.0.0.1:9/base@{root.digest}"), options)
assert source.root() == root and source.document(root) == raw and source.document(config_desc) == config
source.close()
options.close()
print(*[name for name in ("httpx", "httpcore") if name in sys.modules], "end")
"""


def test_a_base_the_cache_serves_makes_no_client_and_loads_no_http_stack(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVED_FROM_CACHE, str(tmp_path / "cache")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["end"]  # neither httpx nor httpcore was imported
