"""What the tests stand on, apart from zeroimage's own code.

- ``cli``: running ``python -m zeroimage`` (to completion, or started for signals), bounded.
- ``waiting``: bounded waits, so that a regression that blocks fails instead of hanging.
- ``peers``: skopeo, umoci, oci-image-tool, runc and apt, each failure shown with its output.
- ``registry`` (with ``pki`` and ``tokenserver``): the CNCF registry on loopback, in every auth set-up.
- ``containerd``, ``dockerd``, ``podman``: runtimes to run images with, on private state
  (``daemon`` starts and always stops the daemons).
- ``faultproxy``: a proxy that injects registry faults.
"""
