"""Request shapes the daemon refuses, with the status and message the
README documents: a method other than POST (HTTP 405), a malformed
grpc-timeout, and a unary request with no message, two messages, or one
cut short (INVALID_ARGUMENT)."""
from alptest import GET, encode_shared, grpc_frame, sd


def test_method_other_than_post_is_http_405(daemon):
    with daemon.raw() as h:
        sid = h.new_stream_id()
        h.send_headers(sid, h.request_headers(GET, method="GET"), end_stream=True)
        st = h.finish(sid)
        assert st.headers.get(":status") == "405", st


def test_malformed_grpc_timeout_is_invalid_argument(daemon):
    with daemon.raw() as h:
        st = h.unary(GET, encode_shared(b"x"), extra=[("grpc-timeout", "abc")])
        assert st.grpc_status == 3, st
        assert st.grpc_message == "malformed grpc-timeout", st


def test_unary_message_count_and_truncation(daemon):
    daemon.stub().SetSharedData(sd("shape", 1, b"ok"), timeout=10)
    one = grpc_frame(encode_shared(b"shape"))
    cases = [
        (b"", "request carried no message"),
        (one + one, "unary request carried more than one message"),
        (grpc_frame(b"", length=50) + b"\x0a\x01", "request ended inside a message"),
    ]
    with daemon.raw() as h:
        for body, message in cases:
            st = h.unary(GET, None, raw_body=body)
            assert st.grpc_status == 3, (message, st)
            assert st.grpc_message == message, st
        # The connection still serves a well-formed request.
        st = h.unary(GET, None, raw_body=one)
        assert st.grpc_status == 0, st
