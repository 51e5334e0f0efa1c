"""`spdlab down`."""


def add_parser(sub):
    p = sub.add_parser("down")
    p.set_defaults(func=lambda args: 0)
    return p
