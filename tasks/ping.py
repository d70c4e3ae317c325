"""A job that does nothing: the floor of an rq round trip, for the control-plane benchmark."""


def ping() -> str:
    return "pong"
