"""Files the project writes (issue 14): a link planted at a predictable name is
never followed, new stores and the folders the project makes are the owner's
only, and the default maildir works on an account that has no data folder yet.

Real files in temp dirs throughout; the CLI in-process, or in a subprocess for
a fresh HOME / XDG_DATA_HOME."""

from __future__ import annotations

import csv
import mailbox
import os
import stat
from pathlib import Path

import pytest

from tui_billing import safefile
from tui_billing.cli import main
from tui_billing.pdf import safe_filename
from tui_billing.store import db as store_db
from tui_billing.store.models import Account, CustomerClass, Xdr
from tui_billing.store.settings import ensure_defaults

from . import factories as F
from .conftest import opened
from .test_jobs_support import cli_env, make_approved, run_cli

PRECIOUS = b"precious: whatever a link points at must never change\n"
HEADER = "xdr_id,account,service,time,quantity,amount\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def victim(tmp_path: Path, name: str) -> Path:
    """A file outside the folders the project writes to, as a link's target."""
    folder = tmp_path / "elsewhere"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(PRECIOUS)
    return path


@pytest.fixture
def umask022():
    old = os.umask(0o022)  # the usual default: without care, files 0644 and folders 0755
    yield
    os.umask(old)


@pytest.fixture
def sqlite_cli(tmp_path, capsys, umask022):
    """The CLI in-process on a SQLite store (these tests are about files, not the backend)."""
    url = "sqlite:///" + str(tmp_path / "store" / "billing.db")
    store = opened(url)
    next(store)

    def run(*args: str):
        code = main(["--db", url, *args])
        store_db.connect(url)
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    store_db.close()


# --------------------------------------------------------------------------
# safefile: the one mechanism


def test_atomic_write_replaces_a_link_at_the_final_name_never_its_target(tmp_path, umask022):
    target = victim(tmp_path, "target")
    final = tmp_path / "out.pdf"
    final.symlink_to(target)
    safefile.atomic_write(final, b"new content")
    assert target.read_bytes() == PRECIOUS
    assert not final.is_symlink() and final.read_bytes() == b"new content"
    assert mode(final) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out.pdf"]  # no temp file left


@pytest.mark.parametrize("dangling", [False, True])
def test_exclusive_creation_refuses_any_link(tmp_path, dangling):
    target = tmp_path / "elsewhere" / "made-through-a-link" if dangling else victim(tmp_path, "target")
    link = tmp_path / "name"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        safefile.create_exclusive(link)
    if dangling:
        assert not target.exists()
    else:
        assert target.read_bytes() == PRECIOUS


def test_a_failed_write_leaves_neither_temp_nor_final(tmp_path):
    final = tmp_path / "rejects.csv"
    final.write_text("the last run's file\n")
    with pytest.raises(RuntimeError):
        with safefile.AtomicFile(final, text=True) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert final.read_text() == "the last run's file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rejects.csv"]


def test_make_dirs_makes_every_missing_level_owner_only_whatever_the_umask(tmp_path):
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    old = os.umask(0o000)
    try:
        safefile.make_dirs(existing / "a" / "b" / "c")
    finally:
        os.umask(old)
    assert mode(existing) == 0o755  # an existing folder keeps its owner's mode
    for folder in (existing / "a", existing / "a" / "b", existing / "a" / "b" / "c"):
        assert mode(folder) == 0o700, folder
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError):
        safefile.make_dirs(a_file / "sub" / "deeper")
    assert not (tmp_path / "elsewhere").exists()
    (tmp_path / "dangling").symlink_to(tmp_path / "elsewhere" / "nowhere")
    with pytest.raises(FileExistsError):
        safefile.make_dirs(tmp_path / "dangling" / "sub")
    assert not (tmp_path / "elsewhere").exists()  # nothing created through the link


# --------------------------------------------------------------------------
# Defect 1: import-xdrs --skip-bad and its rejects file


def _accounts():
    cls = CustomerClass.create(name="Enterprise", send_mode="after_review", hold_days=5, net_days=26)
    return Account.create(
        name="Müller GmbH", email="billing@mueller.example", account_type="business", customer_class=cls, currency="EUR"
    )


def test_rejects_file_never_follows_links_planted_at_its_names(sqlite_cli, tmp_path):
    acc = _accounts()
    upload = tmp_path / "upload"  # a folder others can drop files (and links) into
    upload.mkdir()
    path = upload / "xdrs.csv"
    path.write_text(
        HEADER + f"a,{acc.id},Voice,2026-10-05T08:00:00,1,1\nb,999,Voice,2026-10-05T08:00:00,1,1\n", encoding="utf-8"
    )
    at_tmp = victim(tmp_path, "target-of-the-temp-name")
    at_final = victim(tmp_path, "target-of-the-final-name")
    (upload / "xdrs.rejects.csv.tmp").symlink_to(at_tmp)  # the temp name the import used to write
    (upload / "xdrs.rejects.csv").symlink_to(at_final)
    (upload / ".xdrs.rejects.csv.tmp").symlink_to(tmp_path / "elsewhere" / "created-through-a-link")

    code, _, err = sqlite_cli("import-xdrs", str(path), "--skip-bad")
    assert code == 1 and "xdrs.csv:3: account:" in err
    assert at_tmp.read_bytes() == PRECIOUS and at_final.read_bytes() == PRECIOUS
    assert not (tmp_path / "elsewhere" / "created-through-a-link").exists()
    rejects = upload / "xdrs.rejects.csv"
    assert rejects.is_file() and not rejects.is_symlink()  # the link itself was replaced
    assert mode(rejects) == 0o600
    with open(rejects, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1][:2] == ["b", "999"] and rows[1][-1].startswith("line 3: account:")
    assert sorted(Xdr.select(Xdr.xdr_id).tuples()) == [("a",)]
    # Nothing of ours is left behind: only the links that were planted.
    assert sorted(p.name for p in upload.iterdir()) == [
        ".xdrs.rejects.csv.tmp",
        "xdrs.csv",
        "xdrs.rejects.csv",
        "xdrs.rejects.csv.tmp",
    ]

    # A clean run removes a stale rejects file; a link there goes, its target stays.
    rejects.unlink()
    rejects.symlink_to(at_final)
    path.write_text(HEADER + f"c,{acc.id},Voice,2026-10-05T08:00:00,1,1\n", encoding="utf-8")
    code, _, err = sqlite_cli("import-xdrs", str(path), "--skip-bad")
    assert code == 0, err
    assert not rejects.exists() and not rejects.is_symlink()
    assert at_final.read_bytes() == PRECIOUS and at_tmp.read_bytes() == PRECIOUS


def test_a_directory_at_the_rejects_name_is_refused_before_importing(sqlite_cli, tmp_path):
    acc = _accounts()
    path = tmp_path / "xdrs.csv"
    path.write_text(HEADER + f"a,{acc.id},Voice,2026-10-05T08:00:00,1,1\nb,999,Voice,2026-10-05,1,1\n")
    (tmp_path / "xdrs.rejects.csv").mkdir()
    code, _, err = sqlite_cli("import-xdrs", str(path), "--skip-bad")
    assert code == 2 and "rejects" in err and "is a directory" in err
    assert Xdr.select().count() == 0


# --------------------------------------------------------------------------
# Defect 1 and 4: downloads and merged PDFs


def test_downloads_are_owner_only_and_never_written_through_a_link(sqlite_cli, tmp_path):
    first, second = F.invoice(), F.invoice()
    out = tmp_path / "new" / "nested" / "out"
    merged = tmp_path / "new" / "merged" / "all.pdf"
    code, _, err = sqlite_cli("download", first.number, "--to", str(out), "--merge", str(merged))
    assert code == 0, err
    for folder in (tmp_path / "new", tmp_path / "new" / "nested", out, merged.parent):
        assert mode(folder) == 0o700, folder
    assert mode(out / safe_filename(first.number)) == 0o600
    assert mode(merged) == 0o600

    # A link planted at an invoice's file name: that invoice is refused, the target untouched.
    target = victim(tmp_path, "target")
    (out / safe_filename(second.number)).symlink_to(target)
    code, _, err = sqlite_cli("download", first.number, second.number, "--to", str(out))
    assert code == 1 and f"{second.number}: PDF not written" in err
    assert target.read_bytes() == PRECIOUS

    # A link at the merged file's name: bad input, nothing written, the target untouched.
    link = tmp_path / "new" / "linked.pdf"
    link.symlink_to(target)
    code, _, err = sqlite_cli("download", first.number, "--to", str(tmp_path / "out2"), "--merge", str(link))
    assert code == 2 and "error: merge:" in err
    assert target.read_bytes() == PRECIOUS and link.is_symlink()
    assert not (tmp_path / "out2").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------
# Defect 4: the store


def test_a_new_sqlite_store_and_its_folders_are_owner_only(tmp_path, umask022):
    path = tmp_path / "data" / "deep" / "billing.db"
    store_db.connect("sqlite:///" + str(path))
    try:
        ensure_defaults()  # writes: the WAL and shared-memory files exist now
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        assert wal.exists() and shm.exists()
        assert {p.name: mode(p) for p in (tmp_path / "data", path.parent, path, wal, shm)} == {
            "data": 0o700,
            "deep": 0o700,
            "billing.db": 0o600,
            "billing.db-wal": 0o600,
            "billing.db-shm": 0o600,
        }
    finally:
        store_db.close()


def test_an_existing_store_keeps_the_mode_its_owner_gave_it(tmp_path, umask022):
    """A group can be granted on purpose (README: chmod 0660, a setgid folder)."""
    folder = tmp_path / "team"
    path = folder / "billing.db"
    store_db.connect("sqlite:///" + str(path))
    store_db.close()
    os.chmod(folder, 0o2770)
    os.chmod(path, 0o660)
    store_db.connect("sqlite:///" + str(path))
    try:
        ensure_defaults()
        assert mode(folder) == 0o2770 and mode(path) == 0o660
        assert mode(Path(f"{path}-wal")) == 0o660  # SQLite gives the WAL the store's mode
    finally:
        store_db.close()


# --------------------------------------------------------------------------
# Defect 12 (and 4): the default maildir on a fresh account


def test_default_maildir_on_a_fresh_account_is_created_whole_and_owner_only(tmp_path):
    url = "sqlite:///" + str(tmp_path / "store" / "billing.db")  # the store elsewhere (--db)
    store = opened(url)
    next(store)
    try:
        [inv] = make_approved(1)
    finally:
        store_db.close()
    data_home = tmp_path / "fresh" / "share"  # no user data folder, nor the one above it
    env = cli_env(XDG_DATA_HOME=data_home, HOME=tmp_path / "home")
    r = run_cli(["--db", url, "--now", "2026-11-20T10:00:00Z", "jobs", "run", "--once"], env)
    assert r.returncode == 0, r.stderr
    assert "FileNotFoundError" not in r.stderr and "action=sent" in r.stderr, r.stderr
    maildir = data_home / "tui-billing" / "maildir"
    box = mailbox.Maildir(str(maildir), create=False)
    [msg] = list(box)
    assert inv.number in msg["Subject"]
    for folder in (
        tmp_path / "fresh",
        data_home,
        data_home / "tui-billing",
        maildir,
        maildir / "new",
        maildir / "cur",
        maildir / "tmp",
    ):
        assert mode(folder) == 0o700, folder
    [delivered] = list((maildir / "new").iterdir())
    assert mode(delivered) == 0o600
    assert not (data_home / "tui-billing" / "tui-billing.db").exists()  # the store stayed where --db put it
