"""PKCS#11 backend (python-pkcs11). Only this package imports ``pkcs11``."""
