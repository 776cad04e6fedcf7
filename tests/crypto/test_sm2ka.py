"""SM2 key exchange (GB/T 32918.3-2016 clause 6.1) against the standard's annex A example
and against tests/reference.py's plain-integer write-up of the clause."""

from __future__ import annotations

import secrets

import pytest

from hsmsvc.crypto import compare, sm2
from hsmsvc.crypto.sm2ka import Agreement, Role, agree
from hsmsvc.errors import InvalidInput
from tests import reference as ref
from tests.crypto.sm_curves import TEST_CURVE

H = bytes.fromhex


# GB/T 32918.3-2016 annex A (= GM/T 0003.3-2012 annex A.2), on the annex's 256-bit test curve over Fp.
ID_A, ID_B = b"ALICE123@YAHOO.COM", b"BILL456@YAHOO.COM"
D_A = 0x6FCBA2EF9AE0AB902BC3BDE3FF915D44BA4CC78F88E2F8E7F8996D3B8CCEEDEE
P_A = (0x3099093BF3C137D8FCBBCDF4A2AE50F3B0F216C3122D79425FE03A45DBFE1655,
       0x3DF79E8DAC1CF0ECBAA2F2B49D51A4B387F2EFAF482339086A27A8E05BAED98B)
D_B = 0x5E35D7D3F3C54DBAC72E61819E730B019A84208CA3A35E4C2E353DFCCB2A3B53
P_B = (0x245493D446C38D8CC0F118374690E7DF633A8A4BFB3329B5ECE604B2B4F37F43,
       0x53C0869F4B9E17773DE68FEC45E14904E0DEA45BF6CECF9918C85EA047C60A4C)
R_A = 0x83A2C9C8B96E5AF70BD480B472409A9A327257F1EBB73F5B073354B248668563
RA_POINT = (0x6CB5633816F4DD560B1DEC458310CBCC6856C09505324A6D23150C408F162BF0,
            0x0D6FCF62F1036C0A1B6DACCF57399223A65F7D7BF2D9637E5BBBEB857961BF1A)
R_B = 0x33FE21940342161C55619C4A0C060293D543C80AF19748CE176D83477DE71C80
RB_POINT = (0x1799B2A2C778295300D9A2325C686129B8F2B5337B3DCF4514E8BBC19D900EE5,
            0x54C9288C82733EFDF7808AE7F27D0E732F7C73A7D9AC98B7D8740A91D0DB3CF4)
K_AB = H("55B0AC62A6B927BA23703832C853DED4")  # klen = 128 bits


def _tuple(c: sm2.Curve) -> tuple[int, ...]:
    return (c.p, c.a, c.b, c.gx, c.gy, c.n)


def _both(c: sm2.Curve, da: int, ra: int, db: int, rb: int, id_a: bytes, id_b: bytes, length: int,
          ) -> tuple[Agreement, Agreement]:
    ka, ea, kb, eb = (sm2.private_key_from_d(v, c) for v in (da, ra, db, rb))
    a = agree(Role.INITIATOR, ka, ea, kb.public, eb.public, id_a, id_b, length)
    b = agree(Role.RESPONDER, kb, eb, ka.public, ea.public, id_b, id_a, length)
    return a, b


def test_annex_a_example_both_roles() -> None:
    ka, ea, kb, eb = (sm2.private_key_from_d(v, TEST_CURVE) for v in (D_A, R_A, D_B, R_B))
    assert ((ka.public.x, ka.public.y), (kb.public.x, kb.public.y)) == (P_A, P_B)
    assert ((ea.public.x, ea.public.y), (eb.public.x, eb.public.y)) == (RA_POINT, RB_POINT)
    a = agree(Role.INITIATOR, ka, ea, kb.public, eb.public, ID_A, ID_B, 16)
    b = agree(Role.RESPONDER, kb, eb, ka.public, ea.public, ID_B, ID_A, 16)
    assert a.key == b.key == K_AB
    # B8/A9: A checks S1 against S_B; A10/B10: B checks S2 against S_A.
    assert compare.bytes_eq(a.responder_confirmation, b.responder_confirmation)
    assert compare.bytes_eq(a.initiator_confirmation, b.initiator_confirmation)
    assert a.responder_confirmation != a.initiator_confirmation


@pytest.mark.parametrize("length", [16, 32, 33, 64])
def test_recommended_curve_matches_the_reference(length: int) -> None:
    c = sm2.SM2P256V1
    da, ra, db, rb = (secrets.randbelow(c.n - 2) + 1 for _ in range(4))
    a, b = _both(c, da, ra, db, rb, sm2.DEFAULT_ID, b"BILL456@YAHOO.COM", length)
    pb, rbp = ref.ec_mul(_tuple(c), db, (c.gx, c.gy)), ref.ec_mul(_tuple(c), rb, (c.gx, c.gy))
    assert pb is not None and rbp is not None
    want = ref.sm2_key_exchange(_tuple(c), da, ra, pb, rbp, sm2.DEFAULT_ID, b"BILL456@YAHOO.COM", True, length)
    assert (a.key, a.responder_confirmation, a.initiator_confirmation) == want
    assert (b.key, b.responder_confirmation, b.initiator_confirmation) == want
    assert len(want[0]) == length


def test_different_ids_or_ephemerals_give_other_keys() -> None:
    a, b = _both(TEST_CURVE, D_A, R_A, D_B, R_B, ID_A, b"MALLORY@YAHOO.COM", 16)
    assert a.key == b.key != K_AB
    ka, ea, kb = (sm2.private_key_from_d(v, TEST_CURVE) for v in (D_A, R_A, D_B))
    other = sm2.private_key_from_d(R_B + 1, TEST_CURVE)
    assert agree(Role.INITIATOR, ka, ea, kb.public, other.public, ID_A, ID_B, 16).key != K_AB


def test_rejects_mixed_curves_and_bad_lengths() -> None:
    ka, ea, kb, eb = (sm2.private_key_from_d(v, TEST_CURVE) for v in (D_A, R_A, D_B, R_B))
    rec = sm2.private_key_from_d(R_B, sm2.SM2P256V1)
    with pytest.raises(InvalidInput):
        agree(Role.INITIATOR, ka, ea, kb.public, rec.public, ID_A, ID_B, 16)
    for bad in (0, 65):
        with pytest.raises(InvalidInput):
            agree(Role.INITIATOR, ka, ea, kb.public, eb.public, ID_A, ID_B, bad)
    with pytest.raises(InvalidInput):  # an ephemeral point off the curve never becomes a PublicKey (A6/B3)
        sm2.PublicKey(RB_POINT[0], RB_POINT[1] + 1, TEST_CURVE)


# sm2p256v1 (GB/T 32918.5-2017), IDs 1234567812345678: the SM2 key-exchange vector of Arm's CryptoCell
# runtime test suite (Arm Limited 2019, sm2 "key exchange - 2 parties"); its random seeds are r_A and r_B.
REC_D_A = 0x81EB26E941BB5AF16DF116495F90695272AE2CD63D6C4AE1678418BE48230029
REC_X_A = 0x160E12897DF4EDB61DD812FEB96748FBD3CCF4FFE26AA6F6DB9540AF49C94232
REC_D_B = 0x785129917D45A9EA5437A59356B82338EAADDA6CEB199088F14AE10DEFA229B5
REC_X_B = 0x6AE848C57C53C7B1B5FA99EB2286AF078BA64C64591B8B566F7357D576F16DFB
REC_R_A = 0xD4DE15474DB74D06491C440D305E012400990F3E390C7E87153C12DB2EA60BB3
REC_R_B = 0x7E07124814B309489125EAED101113164EBF0F3458C5BD88335C1F9D596243D6
REC_K = H("6C89347354DE2484C60B4AB1FDE4C6E5")


def test_recommended_curve_published_vector() -> None:
    c = sm2.SM2P256V1
    assert sm2.private_key_from_d(REC_D_A).public.x == REC_X_A
    assert sm2.private_key_from_d(REC_D_B).public.x == REC_X_B
    a, b = _both(c, REC_D_A, REC_R_A, REC_D_B, REC_R_B, sm2.DEFAULT_ID, sm2.DEFAULT_ID, 16)
    assert a.key == b.key == REC_K
    pb, rb = (ref.ec_mul(_tuple(c), v, (c.gx, c.gy)) for v in (REC_D_B, REC_R_B))
    assert pb is not None and rb is not None
    assert ref.sm2_key_exchange(_tuple(c), REC_D_A, REC_R_A, pb, rb, sm2.DEFAULT_ID, sm2.DEFAULT_ID, True,
                                16)[0] == REC_K
