"""One module per verb: each defines add_parser(subparsers) and a handler."""
