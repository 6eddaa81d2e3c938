"""What a version test shows of a sector's answer that refused our credentials: cut, credentials and personal
data masked (`gateway.sectors.calls.shown_body`)."""

from __future__ import annotations

from gateway.sectors.calls import SHOWN_ANSWER_CHARS, shown_body


def test_credential_fields_are_masked_in_json_form_and_header_syntax() -> None:
    shown = shown_body('{"code": "40001", "msg": "签名错误", "access_token": "tok-123", "appSecret": "s3cret"}'
                       ' sign=ABCDEF&timestamp=1 Authorization: Bearer xyz')
    assert "tok-123" not in shown and "s3cret" not in shown and "ABCDEF" not in shown and "xyz" not in shown
    assert '"code": "40001"' in shown and "签名错误" in shown and "timestamp=1" in shown


def test_personal_data_is_masked_and_a_long_answer_is_cut() -> None:
    shown = shown_body("身份证 150202198907230027 电话 13947100008 " + "x" * 5000)
    assert "150202198907230027" not in shown and "13947100008" not in shown
    assert len(shown) <= SHOWN_ANSWER_CHARS + 1 and shown.endswith("…")
