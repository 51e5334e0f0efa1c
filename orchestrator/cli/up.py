"""`spdlab up`."""


def add_parser(sub):
    p = sub.add_parser("up")
    p.set_defaults(func=lambda args: 0)
    return p
