"""Key ceremonies for key officers: ``hsmsvc ceremony ...``.

* :mod:`.lmk`: create, back up, restore and migrate the LMK, offline, at the
  backend (dual control by two to nine custodians' components).
* :mod:`.forming`: form a ZMK or TMK through the server's CeremonyService, with
  two officers approving and the components enciphered under a CTK; print
  component mailers for a new key.
* :mod:`.console`: the custodian's terminal: hidden entry, zeroized buffers.
* :mod:`.mailer`: one component mailer per custodian, as text and PDF.
"""
