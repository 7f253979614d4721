"""Pure value types of the OCI image format: no I/O, and nothing of zeroimage's but its errors.

An image is a graph of content-addressed documents: an index names manifests, a manifest names
a config and layers. Each is described by a :class:`Descriptor`.
"""

from zeroimage.oci import mediatypes
from zeroimage.oci.config import ImageConfig, rfc3339
from zeroimage.oci.descriptor import (
    BASE_DIGEST,
    BASE_NAME,
    CREATED,
    REF_NAME,
    Descriptor,
    dumps,
    loads,
)
from zeroimage.oci.digest import sha256_digest, split_digest, validate_digest, verify_bytes
from zeroimage.oci.manifest import MAX_CONFIG_SIZE, MAX_DOCUMENT_SIZE, Index, Manifest, parse_document
from zeroimage.oci.platform import Platform

__all__ = [
    "BASE_DIGEST",
    "BASE_NAME",
    "CREATED",
    "MAX_CONFIG_SIZE",
    "MAX_DOCUMENT_SIZE",
    "REF_NAME",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "dumps",
    "loads",
    "mediatypes",
    "parse_document",
    "rfc3339",
    "sha256_digest",
    "split_digest",
    "validate_digest",
    "verify_bytes",
]
