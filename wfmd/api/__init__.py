"""The socket and the requests: framing, one dispatch `match`, one module of handlers per noun."""
