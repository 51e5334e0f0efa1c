"""PF_KEY v2: the wire codec, message builders, setkey parser/formatter and client."""
