"""Polyv's MD5 signature, checked against digests computed by hand from the documented recipe."""

from polyv_retriever.polyv.signing import sign, signed_fields, signed_params


def test_keys_in_ordinal_order_uppercase_first_no_separators_secret_at_both_ends() -> None:
    # ordinal: "Zz" < "a" < "b" (uppercase sorts before lowercase); plain text "secretZz1a2b3secret"
    assert sign({"b": "3", "a": "2", "Zz": "1"}, "secret") == "653DF27F34FB31AD7498F220D23C3AD3"


def test_null_and_empty_values_are_not_signed() -> None:
    with_blanks = {"b": "3", "a": "2", "Zz": "1", "empty": "", "none": None}
    assert sign(with_blanks, "secret") == sign({"b": "3", "a": "2", "Zz": "1"}, "secret")


def test_sign_is_excluded_even_when_passed_in() -> None:
    assert (
        sign({"b": "3", "a": "2", "Zz": "1", "sign": "OLD"}, "secret") == "653DF27F34FB31AD7498F220D23C3AD3"
    )


def test_values_with_commas_spaces_and_non_ascii_are_signed_raw_as_utf8() -> None:
    # plain text "kk2x y,z名字视频 a,bk": ordinal order puts "k2" before "名字"
    assert sign({"名字": "视频 a,b", "k2": "x y,z"}, "k") == "4CE86227998295125BB858186217D391"


def test_the_documented_query_call_shape() -> None:
    params = {"appId": "a0Wmol5EwX", "timestamp": 1617950661602, "taskId": "16661c08b9564c1ea6f4544ccd568e58"}
    assert sign(params, "S") == "207854A573B974E5BB8A42DE8CEEC5EF"


def test_signature_is_32_uppercase_hex() -> None:
    digest = sign({"a": "1"}, "s")
    assert len(digest) == 32
    assert digest == digest.upper()
    int(digest, 16)


def test_signed_params_sends_exactly_what_it_signs() -> None:
    sent = signed_params({"vids": "a,b", "expireDays": 3, "blank": "", "sign": "x"}, "s")
    assert set(sent) == {"vids", "expireDays", "sign"}
    assert sent["expireDays"] == "3"
    assert sent["sign"] == sign(signed_fields({"vids": "a,b", "expireDays": 3}), "s")
