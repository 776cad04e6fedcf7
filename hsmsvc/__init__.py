"""hsmsvc: payment-HSM crypto middleware for bank core systems.

Layers depend downward only: api -> service -> keys -> hsm -> crypto.
`hsmsvc.types` and `hsmsvc.errors` sit beside the layers.
"""

__version__ = "0.1.0"
