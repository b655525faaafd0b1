"""Pure value types shared by several domains: no I/O, no third-party imports."""
