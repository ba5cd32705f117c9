"""enosprov: onboard IoT devices into EnOS through its Device Provisioning Service.

The Python API lives in :mod:`enosprov.api`; this module stays import-light so that
``enosprov --help`` starts fast.
"""

__version__ = "0.1.0"
