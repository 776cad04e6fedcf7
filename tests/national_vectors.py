"""Published vectors for the national algorithms' MACs (issue 33), shared by tests/test_reference.py and
the crypto, hsm and API tests (a helper module, so no test module imports another)."""

from __future__ import annotations

H = bytes.fromhex

# GM/T 0042-2015 appendix D.3, HMAC-SM3, as OpenSSL's test data carries it
# (test/recipes/30-test_evp_data/evpmac_sm3.txt): key (hex), message, HMAC-SM3 (hex).
# Keys of 32, 37, 32 and 16 bytes.
GMT_0042_D3 = [
    ("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
     b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq" * 2,
     "ca05e144ed05d1857840d1f318a4a8669e559fc8391f414485bfdf7bb408963a"),
    ("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425", H("cd") * 50,
     "220bf579ded555393f0159f66c99877822a3ecf610d1552154b41d44b94db3ae"),
    ("0b" * 32, b"Hi There", "c0ba18c68b90c88bc07de794bfc7d2c8d19ec31ed8773bc2b390c9604e0be11e"),
    (b"Jefe Jeferson Jr".hex(), b"what do ya want for nothing?",
     "ce791a34c59adef472997a249600f3f244d59e875be04055ba2ae12fc845e78c"),
]

# GB/T 32905-2016 appendix A, example 1: SM3("abc").
SM3_ABC = H("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")

# The UnionPay POS MAC with SM4, a published worked example ("pos终端mac国密(sm4)算法(java实现)",
# https://blog.csdn.net/weixin_36308404/article/details/115071206, also
# https://wsa.jianshu.io/p/cff10e8594dd; its demo is github.com/Cats-eat-fish/-sm4-MAC-): key, data
# (ASCII), and the blocks it prints for steps b) to e): RESULT BLOCK, ENC BLOCK1, TEMP BLOCK. It
# prints no final block, and its demo returns the first 8 *bytes* of ENC BLOCK2 (16 hex
# characters), not the 8 characters of step h).
UNIONPAY_SM4_KEY = H("12345678901234567890123456789012")
UNIONPAY_SM4_DATA = b"6000112018111411003020170930101010120171025000755000000005553"
UNIONPAY_SM4_BLOCKS = (H("02000202030004060106020403343734"), H("B038A2B2F3FFE3C8AC60B377C70C2DB1"),
                       H("80099284C3CDD3FC9C538043F43B1E85"))
UNIONPAY_SM4_MAC = b"1E80F373"
"""Steps f) to h) over the published blocks, by tests/reference.py (not printed by the example)."""

# The UnionPay POS MAC with TDES, step b): a published walk-through
# (https://blog.youkuaiyun.com/zhu244912654/article/details/80005341) XORs the first four blocks of
# an 0200 message's MAB to 9A1753638ED222D9.
UNIONPAY_TDES_MAB4 = H("0200302004C020C0981100000000000000005100183402100006324392260009")
UNIONPAY_TDES_XOR4 = H("9A1753638ED222D9")
