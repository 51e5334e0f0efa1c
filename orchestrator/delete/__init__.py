"""Mass SPD deletes: one SPDFLUSH, N SPDDELETE, N SPDDELETE2, or lifetimes that end together."""
