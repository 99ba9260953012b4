"""CLI sub-commands, one module per area; each has register(subparsers)."""
