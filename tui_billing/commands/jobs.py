"""jobs run and outbox: the job loop and mail delivery."""


def register(sub) -> None:
    pass
