"""Files that survive interruptions and user mistakes.

Atomic writes: readers see the old file or the new one, never a torn one, so a job killed at
any moment (even with SIGKILL) leaves every file it wrote usable. Output paths are checked
(`check_output_file`, `check_output_dir`; long commands call them before any work), so a
read-only folder or a path that is a file fails in one line naming the path. Generated
folders carry an owner mark (`claim_dir`): a generator replaces only a folder with its mark
that holds nothing but its own files (`remove_owned_dir`), never a folder of the user's.
"""
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import PIL.Image
import torch

from util.errors import UserError

OWNER_FILE = ".owner"


def _check_creatable(path, what):
    """`path` does not exist yet: its nearest existing ancestor must be a writable folder."""
    ancestor = next(p for p in [*path.parents, Path(".")] if p.exists())
    if not ancestor.is_dir():
        raise UserError(f"cannot create the {what} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"cannot create the {what} {path}: {ancestor} is not writable")


def check_output_file(path, what="output file"):
    """`path` as a Path; a UserError naming it if a file cannot be written there."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"the {what} {path} is a folder; give a file name")
    if path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise UserError(f"cannot replace the {what} {path}: {path.parent} is not writable")
    else:
        _check_creatable(path, what)
    return path


def check_output_dir(path, what="output folder"):
    """`path` as a Path; a UserError naming it if files cannot be written into that folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"the {what} {path} is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"cannot write into the {what} {path}: it is not writable")
    else:
        _check_creatable(path, what)
    return path


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path next to `path` to write to; it replaces `path` when the block ends
    without an error and is removed otherwise."""
    path = check_output_file(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def writing(what, remove_on_failure=None):
    """An OSError in the block (a full disk, a quota, an I/O error) becomes a one-line UserError
    naming `what` was being written; the folder `remove_on_failure`, if given, is deleted first
    (a half-written temporary folder only takes the disk space the user needs back)."""
    try:
        yield
    except OSError as err:
        if remove_on_failure is not None:
            shutil.rmtree(remove_on_failure, ignore_errors=True)
        raise UserError(f"cannot write {what}: {err.strerror or err}") from None


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path, text):
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj):
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_savefig(fig, path, **savefig_options):
    """Save the matplotlib figure `fig` to `path` atomically, in the format of its suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or None, **savefig_options)
    return path


def atomic_torch_save(obj, path):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def content_digest(paths, block=1 << 16):
    """A fast digest of the files `paths` (names, sizes and contents) that keys a cache: a
    file edited in place with its size and mtime kept (`cp -p`, `rsync -t`) changes it. Files
    up to 2 * `block` bytes are read whole; of larger ones, the first and last `block` bytes."""
    digest = hashlib.blake2b(digest_size=20)
    for path in paths:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest.update(f"{path}\0{size}\0".encode())
            digest.update(handle.read(2 * block if size <= 2 * block else block))
            if size > 2 * block:
                handle.seek(size - block)
                digest.update(handle.read(block))
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------
# Folders a generator owns.

@contextlib.contextmanager
def exclusive_lock(path, what):
    """Hold an exclusive lock on the file `path` (holding this process's pid) for the block; a
    UserError naming `what` if another process holds it. The system drops the lock when its
    process ends, however it ends, so a killed run never leaves a stale lock behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip()
            raise UserError(f"{what} is in use by another process{f' (pid {pid})' if pid else ''}: "
                            "wait for it to end, or stop it, then rerun") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def claim_dir(path, owner):
    """Create the new folder `path` and mark it as written by `owner`."""
    path = Path(path)
    path.mkdir(parents=True)
    (path / OWNER_FILE).write_text(owner + "\n")
    return path


def is_owned(path, owner):
    mark = Path(path) / OWNER_FILE
    return mark.is_file() and mark.read_text(errors="replace").strip() == owner


def check_replaceable(path, owner, owns=lambda relative: True, force=False):
    """Raise a UserError naming `path` and --force unless `owner` may delete it: it does not
    exist, is an empty folder, or carries the owner's mark and holds only files that
    `owns(relative posix path)` accepts. Anything else may hold the user's files."""
    path = Path(path)
    if force or not (path.exists() or path.is_symlink()):
        return
    hint = "move it away, choose another output folder, or pass --force to replace it"
    if not path.is_dir() or path.is_symlink():
        raise UserError(f"{path} is in the way and was not written by {owner}: {hint}")
    if not any(path.iterdir()):
        return
    if not is_owned(path, owner):
        raise UserError(f"{path} exists and was not written by {owner}: {hint}")
    for file in sorted(p for p in path.rglob("*") if not p.is_dir()):
        relative = file.relative_to(path).as_posix()
        if relative != OWNER_FILE and not owns(relative):
            raise UserError(f"{path} holds {relative}, which {owner} did not write: {hint}")


def remove_owned_dir(path, owner, owns=lambda relative: True, force=False):
    """Delete `path` after `check_replaceable` allowed it."""
    path = Path(path)
    check_replaceable(path, owner, owns, force)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def written_by_study(path, writer, title):
    """Whether `path` is a markdown file (starting with `title`) or a PNG that the study script
    `writer` wrote (its mark: the path in the text, the PNG's Software field)."""
    try:
        if path.suffix == ".png":
            with PIL.Image.open(path) as image:
                return image.info.get("Software") == writer
        return path.read_text().startswith(title) and f"`{writer}`" in path.read_text()
    except (OSError, ValueError):
        return False


def add_study_flags(parser, runs, files):
    """The flags of every study script (scripts/*_study.py): --data-root, --runs (its job
    folders, default `runs`), and --out and --force for its output `files`."""
    names = " and ".join(files)
    parser.add_argument("--data-root", default="data", help="default %(default)s")
    parser.add_argument("--runs", default=runs, help="the study's jobs (default %(default)s)")
    parser.add_argument("--out", help=f"folder for {names} (default: RUNS; --out docs replaces the repository's)")
    parser.add_argument("--force", action="store_true",
                        help=f"replace {names} in OUT even if this script did not write them")


def study_outputs(args, files, writer, title):
    """The paths of a study's output `files` in --out (default --runs), checked before any
    training: each can be written, and replaces only a file of `writer` (or any with --force)."""
    paths = [Path(args.out or args.runs) / name for name in files]
    for path in paths:
        check_output_file(path)
        if path.exists() and not args.force and not written_by_study(path, writer, title):
            raise UserError(f"{path} exists and was not written by {writer}: choose another --out, "
                            "or pass --force to replace it")
    return paths
