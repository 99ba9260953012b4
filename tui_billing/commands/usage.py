"""import-xdrs and bill-run: turning usage into invoices."""


def register(sub) -> None:
    pass
