"""`spdlab status`."""


def add_parser(sub):
    p = sub.add_parser("status")
    p.set_defaults(func=lambda args: 0)
    return p
