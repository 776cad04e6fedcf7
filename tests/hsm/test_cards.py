"""Card values and EMV cryptograms inside each backend (issue 35).

Keys are formed from the published vectors' clear values; every answer is the vector's or
tests/reference.py's. A backend without the card commands (PKCS#11 on SoftHSM2) refuses by name.
"""

from __future__ import annotations

import secrets

import pytest

from hsmsvc.crypto.cvv import CvvKind
from hsmsvc.crypto.emv import MasterKeyOption, SessionKeyMethod
from hsmsvc.errors import InvalidInput, KeyUsageViolation, Unsupported
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import (
    ArpcMethod,
    ArqcData,
    CvvData,
    DynamicCvvData,
    DynamicKind,
    GenerateCvv,
    VerifyArqcs,
    VerifyCvvs,
    VerifyDynamicCvvs,
)
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import check_binding
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from tests import reference as ref
from tests.hsm.helpers import form_known

H = bytes.fromhex
A = MasterKeyOption.A
# The CVK of psec's documented example and of the CVV test data (CVK A 0123456789ABCDEF, B FEDCBA9876543210),
# which is also pyemv's IMK (KCV 08D7 in its HSM tests).
K0 = H("0123456789ABCDEFFEDCBA9876543210")
# pyemv tests/test_cvn_hsm.py, test_visa_cvn18: PAN 1234567890123456, PSN 00, ATC 001C, the terminal data
# then the whole 9F10; ARQC 7A788EA6B8A3E733, ARPC method 2 with CSU 00000000: 9AF514C1.
VISA_TX = H("000000004000" "000000000000" "0124" "8000048000" "0124" "191105" "01" "52BF4585" "1800" "001C")
CVN18_DATA = VISA_TX + H("06011203A0B800")
# Same test file, test_visa_cvn10: padding method 1 over the CVR, ARPC method 1 under the card key, ARC 3030.
CVN10_DATA = VISA_TX + H("03A06010")
# gep3 tests/key_management_test.py and dsc_test.py: dCVV issuer key, PAN 4012340000000016, expiry 1228,
# ATC 0001: dCVV 369. pyemv tests/test_cvv_hsm.py: CVC3 issuer key, PAN 5123456789012345, PSN 00, track 2,
# UN 00000899, ATC 005E: CVC3 29488 (its pyemv/cvv.py docstring gives the five digits).
DCVV_IMK = H("01017391010101101320010101010101")
CVC3_IMK = H("01234567899876543210012345678998")
CVC3_TRACK = H("5123456789012345D35121010000000000000F")


def _supported(backend: Backend, cvk: KeyCryptogram) -> bool:
    if Command.CARD in backend.capabilities.commands:
        return True
    with pytest.raises(Unsupported):
        backend.execute(GenerateCvv(key=cvk, data=CvvData(kind=CvvKind.CVV2, pan="4123456789012345", expiry="8701")))
    return False


def test_cvvs_by_the_published_data(backend: Backend) -> None:
    cvk = form_known(backend, KeyType.CVK, KeyUsage.CVK, ModeOfUse.MAC_GENERATE_VERIFY, K0)
    if not _supported(backend, cvk):
        return
    psec = CvvData(kind=CvvKind.CVV, pan="1234567890123456", expiry="9912", service_code="220")
    assert backend.execute(GenerateCvv(key=cvk, data=psec)) == "170"  # psec, psec/cvv.py docstring
    cvv2 = CvvData(kind=CvvKind.CVV2, pan="4123456789012345", expiry="8701")
    four = backend.execute(GenerateCvv(key=cvk, data=cvv2, length=4))
    assert four == ref.cvv_value(K0, "4123456789012345", "8701", "000", 4)
    items = [psec, CvvData(kind=CvvKind.CVV, pan="4123456789012345", expiry="8701", service_code="101"), cvv2,
             cvv2, psec]
    # The CVV test data (fsou.com, "(三)测试数据"): 561 for that card; a wrong digit; a malformed value.
    out = backend.execute(VerifyCvvs(key=cvk, items=items, values=["170", "561", four, "12x", "171"]))
    assert out[:3] == [True, True, True] and out[4] is False
    assert isinstance(out[3], InvalidInput)


def test_a_cvk_binds_its_operations(backend: Backend) -> None:
    verify_only = form_known(backend, KeyType.CVK, KeyUsage.CVK, ModeOfUse.MAC_VERIFY_ONLY, K0)
    if not _supported(backend, verify_only):
        return
    data = CvvData(kind=CvvKind.CVV2, pan="4123456789012345", expiry="8701")
    with pytest.raises(KeyUsageViolation):
        backend.execute(GenerateCvv(key=verify_only, data=data))  # a verifier never answers a value
    assert backend.execute(VerifyCvvs(key=verify_only, items=[data], values=[ref.cvv_value(
        K0, "4123456789012345", "8701", "000")])) == [True]
    for alg, mode in ((Algorithm.TDES_3KEY, ModeOfUse.MAC_GENERATE_VERIFY), (Algorithm.TDES_2KEY, ModeOfUse.DERIVE),
                      (Algorithm.AES_128, ModeOfUse.MAC_GENERATE_VERIFY)):
        with pytest.raises(InvalidInput):
            check_binding(KeyType.CVK, KeyUsage.CVK, alg, mode)


def test_dynamic_values_under_the_issuer_keys(backend: Backend) -> None:
    dcvv_imk = form_known(backend, KeyType.IMK, KeyUsage.EMV_OTHER, ModeOfUse.DERIVE, DCVV_IMK)
    cvc3_imk = form_known(backend, KeyType.IMK, KeyUsage.EMV_DYNAMIC_NUMBERS, ModeOfUse.DERIVE, CVC3_IMK)
    if Command.CARD not in backend.capabilities.commands:
        return
    dcvv = DynamicCvvData(kind=DynamicKind.DCVV, pan="4012340000000016", psn="00", option=A, atc=H("0001"),
                          expiry="1228")
    cvc3 = DynamicCvvData(kind=DynamicKind.CVC3, pan="5123456789012345", psn="00", option=A, atc=H("005E"),
                          track=CVC3_TRACK, unpredictable_number=H("00000899"))
    assert backend.execute(VerifyDynamicCvvs(key=dcvv_imk, items=[dcvv, dcvv], values=["369", "368"])) == [True, False]
    assert backend.execute(VerifyDynamicCvvs(key=cvc3_imk, items=[cvc3, cvc3, cvc3],
                                             values=["29488", "488", "29489"])) == [True, True, False]
    with pytest.raises(KeyUsageViolation):  # a dCVV key never checks a CVC3, nor the reverse
        backend.execute(VerifyDynamicCvvs(key=dcvv_imk, items=[cvc3], values=["488"]))
    with pytest.raises(KeyUsageViolation):  # nor an application cryptogram
        backend.execute(VerifyArqcs(key=dcvv_imk, items=[]))


def test_arqcs_and_arpcs_by_pyemv(backend: Backend) -> None:
    imk = form_known(backend, KeyType.IMK, KeyUsage.EMV_AC, ModeOfUse.DERIVE, K0)
    if Command.CARD not in backend.capabilities.commands:
        return
    base = dict(pan="1234567890123456", psn="00", option=A, atc=H("001C"))
    cvn18 = ArqcData(**base, method=SessionKeyMethod.VISA_CVN18, data=CVN18_DATA,  # type: ignore[arg-type]
                     arqc=H("7A788EA6B8A3E733"), arpc=ArpcMethod.METHOD_2, csu=H("00000000"))
    cvn10 = ArqcData(**base, method=SessionKeyMethod.VISA_CVN10, data=CVN10_DATA,  # type: ignore[arg-type]
                     arqc=H("29CCA15AE665FA2E"), arpc=ArpcMethod.METHOD_1, arc=H("3030"))
    wrong = ArqcData(**base, method=SessionKeyMethod.VISA_CVN18, data=CVN18_DATA + b"\x00",  # type: ignore[arg-type]
                     arqc=H("7A788EA6B8A3E733"), arpc=ArpcMethod.METHOD_2, csu=H("00000000"))
    bad = ArqcData(**base, method=SessionKeyMethod.VISA_CVN18, data=CVN18_DATA,  # type: ignore[arg-type]
                   arqc=H("7A788EA6B8A3E7"))
    out = backend.execute(VerifyArqcs(key=imk, items=[cvn18, cvn10, wrong, bad]))
    assert out[:3] == [H("9AF514C1"), H("28993816AFAE4AEB"), None]
    assert isinstance(out[3], InvalidInput) and str(out[3]).startswith("arqc")
    # Against the reference: the EMV common session key, method 1 under it.
    mk = ref.emv_card_key(K0, "1234567890123456", "00")
    sk = ref.emv_session_key(mk, H("001C"))
    data = secrets.token_bytes(29)
    arqc = ref.emv_ac(sk, data)
    item = ArqcData(**base, method=SessionKeyMethod.EMV_CSK, data=data, arqc=arqc,  # type: ignore[arg-type]
                    arpc=ArpcMethod.METHOD_1, arc=H("3030"))
    assert backend.execute(VerifyArqcs(key=imk, items=[item])) == [ref.emv_arpc_method1(sk, arqc, H("3030"))]


def test_no_legacy_ecb_form_carries_a_cvk_or_an_imk() -> None:
    # An ECB form binds no key type: a CVK or IMK taken in again as a DEK would encipher CVVs or card keys.
    from hsmsvc.hsm.model import LegacyForm
    from hsmsvc.keys.hierarchy import check_legacy_types

    zmk = KeySpec("zmk", 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT)
    for kt in (KeyType.CVK, KeyType.IMK):
        for legacy in (LegacyForm.X917_ECB, LegacyForm.PAYSHIELD_VARIANT, LegacyForm.HSMSVC_VARIANT):
            with pytest.raises(InvalidInput, match=f"{kt.value}: only in a TR-31"):
                check_legacy_types(zmk, frozenset({kt, KeyType.DEK}), legacy)


def test_an_imk_derives_and_nothing_else() -> None:
    for usage in (KeyUsage.EMV_AC, KeyUsage.EMV_SMC, KeyUsage.EMV_SMI, KeyUsage.EMV_DYNAMIC_NUMBERS,
                  KeyUsage.EMV_OTHER):
        check_binding(KeyType.IMK, usage, Algorithm.TDES_2KEY, ModeOfUse.DERIVE)
        check_binding(KeyType.IMK, usage, Algorithm.SM4, ModeOfUse.DERIVE)
    for alg, mode in ((Algorithm.TDES_2KEY, ModeOfUse.ENCRYPT_DECRYPT), (Algorithm.AES_128, ModeOfUse.DERIVE),
                      (Algorithm.TDES_3KEY, ModeOfUse.DERIVE)):
        with pytest.raises(InvalidInput):
            check_binding(KeyType.IMK, KeyUsage.EMV_AC, alg, mode)
    with pytest.raises(InvalidInput):
        check_binding(KeyType.IMK, KeyUsage.CVK, Algorithm.TDES_2KEY, ModeOfUse.DERIVE)


# --- Issuer scripts and the offline PIN change (pyemv tests/test_cvn_hsm.py, HSM-checked) -----------
# IMKs for AC, integrity and confidentiality; PAN 1234567890123456, PSN 00, ATC 001C; new PIN 9999.
IMK_SMI = H("FEDCBA98765432100123456789ABCDEF")
IMK_SMC = H("89ABCDEF0123456776543210FEDCBA98")


def _script_keys(backend: Backend) -> tuple[KeyCryptogram, KeyCryptogram, KeyCryptogram]:
    return (form_known(backend, KeyType.IMK, KeyUsage.EMV_AC, ModeOfUse.DERIVE, K0),
            form_known(backend, KeyType.IMK, KeyUsage.EMV_SMI, ModeOfUse.DERIVE, IMK_SMI),
            form_known(backend, KeyType.IMK, KeyUsage.EMV_SMC, ModeOfUse.DERIVE, IMK_SMC))


def test_issuer_scripts_and_pin_changes_by_pyemv(backend: Backend) -> None:
    from hsmsvc.crypto.emv import ScriptEncryption, ScriptKeyMethod
    from hsmsvc.errors import InvalidPinBlock
    from hsmsvc.hsm.commands import GenerateIssuerScript, GeneratePinChangeScript, ScriptData
    from hsmsvc.hsm.model import PinBlock
    from hsmsvc.types import PinBlockFormat
    from tests.hsm.helpers import form as form_key

    ac, smi, smc = _script_keys(backend)
    if Command.CARD not in backend.capabilities.commands:
        return
    zpk, zpk_clear = form_key(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    pan = "1234567890123456"

    def block(pin: str) -> PinBlock:
        return PinBlock(ref.tdes_ecb(zpk_clear, ref.iso0(pin, pan)), PinBlockFormat.ISO_0, pan)

    def script(method: ScriptKeyMethod, arqc: str, command: str, **kw: object) -> ScriptData:
        return ScriptData(pan=pan, psn="00", option=A, method=method, atc=H("001C"), arqc=H(arqc),  # type: ignore
                          command=H(command), **kw)

    visa = ScriptKeyMethod.VISA
    # test_visa_cvn18: the MAC of 8418000008 (Visa script keys from the ATC, MAC over ATC || ARQC).
    assert backend.execute(GenerateIssuerScript(smi=smi, script=script(
        visa, "7A788EA6B8A3E733", "84180000"))) == H("8418000008" "04EDE90BC24CC35E")
    # Its PIN changes: the VIS block masked by the card's AC key; then with the current PIN 8888.
    new = script(visa, "7A788EA6B8A3E733", "84240002", encryption=ScriptEncryption.VISA)
    assert backend.execute(GeneratePinChangeScript(pin=block("9999"), key=zpk, smi=smi, smc=smc, script=new,
                                                   ac=ac)) == H(
        "8424000218BB221AF527377A2811D2B6EBC396A9391A22B480EF312F40")
    cur = script(visa, "7A788EA6B8A3E733", "84240001", encryption=ScriptEncryption.VISA)
    assert backend.execute(GeneratePinChangeScript(pin=block("9999"), key=zpk, smi=smi, smc=smc, script=cur,
                                                   ac=ac, current=block("8888"))) == H(
        "84240001182EE025E554BCD87E11D2B6EBC396A9390FB94A4E4EC10F41")
    # test_mastercard_cvn16: script keys from the ARQC, Mastercard encipherment.
    mc = script(ScriptKeyMethod.EMV_CSK, "24CCF3DEE3158C70", "84240002", encryption=ScriptEncryption.MASTERCARD)
    assert backend.execute(GeneratePinChangeScript(pin=block("9999"), key=zpk, smi=smi, smc=smc, script=mc)) == H(
        "842400021000859B8FE53F316DEB4B64C36BF88E39")
    # test_interac_cvn133: the MAC over the command alone.
    interac = script(ScriptKeyMethod.EMV_CSK, "18932FECA2D84326", "84240000", mac_over_transaction=False)
    assert backend.execute(GenerateIssuerScript(smi=smi, script=interac)) == H(
        "8424000008" "B574ABB0A485A330")
    # A wrong PIN block is the one generic error; the keys' usages are their own.
    bad = PinBlock(bytes(8), PinBlockFormat.ISO_0, pan)
    with pytest.raises(InvalidPinBlock):
        backend.execute(GeneratePinChangeScript(pin=bad, key=zpk, smi=smi, smc=smc, script=mc))
    with pytest.raises(KeyUsageViolation):
        backend.execute(GenerateIssuerScript(smi=smc, script=interac))
    with pytest.raises(KeyUsageViolation):
        backend.execute(GeneratePinChangeScript(pin=block("9999"), key=zpk, smi=smi, smc=ac, script=mc))
    with pytest.raises(InvalidInput, match="^ac_key"):
        backend.execute(GeneratePinChangeScript(pin=block("9999"), key=zpk, smi=smi, smc=smc, script=mc, ac=ac))
    # What an adversarial review found, each refused before any PIN block is deciphered:
    # nothing but a PIN change is enciphered under the confidentiality key (enciphered script data was
    # a codebook for its PIN changes, twice) ...
    with pytest.raises(InvalidInput, match="^encryption"):
        backend.execute(GenerateIssuerScript(smi=smi, script=script(
            ScriptKeyMethod.EMV_CSK, "24CCF3DEE3158C70", "84DA0000", encryption=ScriptEncryption.VISA,
            data=b"\x00" * 7 + H("08249999FFFFFFFF"))))
    # ... a source block that binds no PAN;
    iso1 = PinBlock(ref.tdes_ecb(zpk_clear, ref.iso1("9999")), PinBlockFormat.ISO_1, pan)
    with pytest.raises(InvalidInput, match="^format"):
        backend.execute(GeneratePinChangeScript(pin=iso1, key=zpk, smi=smi, smc=smc, script=mc))
    # ... a PIN taken onto another card; an R of an application cryptogram key's form; an SM4 AC IMK
    # masking a TDES block; a field named after decryption (the ARQC's length is checked first).
    other = PinBlock(ref.tdes_ecb(zpk_clear, ref.iso0("9999", "4000001234567899")), PinBlockFormat.ISO_0,
                     "4000001234567899")
    with pytest.raises(InvalidInput, match="^pan"):
        backend.execute(GeneratePinChangeScript(pin=other, key=zpk, smi=smi, smc=smc, script=mc))
    for r in ("001C000000000000", "001C010000000000", "001CFF00CAFEBABE"):  # A1.3.1 overwrites the third byte
        with pytest.raises(InvalidInput, match="^arqc"):
            backend.execute(GenerateIssuerScript(smi=smi, script=script(ScriptKeyMethod.EMV_CSK, r, "84240000")))
    sm4_ac = form_known(backend, KeyType.IMK, KeyUsage.EMV_AC, ModeOfUse.DERIVE, K0, Algorithm.SM4)
    with pytest.raises(KeyUsageViolation, match="^ac_key"):
        backend.execute(GeneratePinChangeScript(pin=bad, key=zpk, smi=smi, smc=smc, script=new, ac=sm4_ac))
    with pytest.raises(InvalidInput, match="^arqc"):
        backend.execute(GeneratePinChangeScript(pin=bad, key=zpk, smi=smi, smc=smc, script=script(
            ScriptKeyMethod.EMV_CSK, "0102", "84240002", encryption=ScriptEncryption.MASTERCARD)))

