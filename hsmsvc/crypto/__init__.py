"""Pure payment-cryptography functions: hazardous materials.

Functions here take clear key bytes. Only ``hsmsvc.hsm`` calls them with real
keys; everything above the backend boundary sees key cryptograms only. No I/O
and no state: callers that want speed cache cipher contexts themselves (see
``_cipher.BlockCipher``).
"""
