"""Output paths that never destroy what a user saved: one set of checks for every writer.

Every command and function that writes files calls these before it computes anything:

* :func:`check_output_file` -- a file to write: not a directory, not under a file, with an
  accepted extension, never one of the command's inputs (not even with ``overwrite``), and
  not an existing file unless ``overwrite`` is given;
* :func:`check_output_files` -- the named files a command writes into a folder (a report, a
  figure, tables), each checked as above;
* :class:`OutputLock` -- an exclusive ``PATH.lock`` (created with ``O_EXCL``, holding the
  owner's pid and host) so that two runs writing the same output cannot both go on.

Errors are :class:`OSError` subclasses (``FileExistsError``, ``IsADirectoryError``,
``NotADirectoryError``) or :class:`ValueError`, each one line saying what to do.
"""
import os
import socket
import tempfile
import time

#: how old (seconds) an unreadable lock file must be before it is taken as stale: a lock is
#: created empty and its owner writes its pid at once, so only a crash leaves one empty.
EMPTY_LOCK_GRACE_S = 10.0


class OutputExistsError(FileExistsError):
    """An output file exists and ``overwrite`` was not given."""


class OutputLockedError(FileExistsError):
    """Another live run holds the lock of an output."""


def _same_file(a, b):
    """Both exist and are one file (an input that does not exist, e.g. a dataset name, is
    never the output)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _check_parent(path, what):
    """Every existing ancestor of ``path`` must be a directory, and the nearest one must accept
    new files (probed by creating and removing an empty one: the writers write a temporary
    file beside ``path``, or create the folders missing below that ancestor)."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise NotADirectoryError(f"{what} {path!r} lies under {parent!r}, which is a file, not "
                                 "a folder: choose another path.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cil-genreg-write-test.", dir=parent or ".")
    except OSError as err:
        raise PermissionError(f"{what} {path!r} cannot be written: the folder {parent!r} does "
                              f"not accept new files ({err.strerror or err}): choose a writable "
                              "folder, or change its permissions.") from None
    os.close(fd)
    os.remove(probe)


def check_output_file(path, *, overwrite=False, inputs=(), suffixes=None, what="--out",
                      overwrite_flag="--overwrite"):
    """Check, before any computation, that ``path`` may be written.

    Parameters
    ----------
    path : str or os.PathLike
        the file to write.
    overwrite : bool
        replace an existing file (never one of ``inputs``).
    inputs : iterable of str
        files the command reads: writing to one of them is always refused.
    suffixes : tuple of str, optional
        accepted endings (lower case, e.g. ``(".npy", ".png")``).
    what, overwrite_flag : str
        how the option is called in messages (e.g. ``"--out"`` / ``"--overwrite"`` on the
        command line, ``"checkpoint"`` / ``"overwrite=True"`` in Python).

    Returns
    -------
    str
        ``path`` as a string.

    Raises
    ------
    TypeError
        when ``path`` is not a str or path-like.
    ValueError
        for an empty path, a wrong extension or one of the inputs.
    IsADirectoryError, NotADirectoryError
        when ``path`` is a folder or lies under a file.
    PermissionError
        when its folder does not accept new files (checked before anything is computed).
    OutputExistsError
        when ``path`` exists and ``overwrite`` is False.
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise TypeError(f"{what} must be a path (str), got {type(path).__name__}.")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{what} is empty: give a file path.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path!r} is a folder: give a file path inside it "
                                f"(e.g. {os.path.join(path, 'out' + (suffixes or ('',))[0])!r}).")
    _check_parent(path, what)
    if suffixes and not path.lower().endswith(tuple(suffixes)):
        raise ValueError(f"{what} must end in {', '.join(suffixes)}, got {path!r}.")
    for source in inputs:
        if source is not None and _same_file(path, os.fspath(source)):
            raise ValueError(f"{what} {path!r} is also an input of this command: writing it "
                             "would destroy the input. Choose another output path.")
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise FileExistsError(f"{what} {path!r} exists and is not a regular file: choose "
                                  "another path.")
        if not overwrite:
            raise OutputExistsError(f"{what} {path!r} exists: choose another path, or pass "
                                    f"{overwrite_flag} to replace it.")
    return path


def check_output_files(folder, names, *, overwrite=False, inputs=(), what="--out",
                       overwrite_flag="--overwrite"):
    """Check the files ``names`` that a command will write into ``folder`` (see
    :func:`check_output_file`); other files in the folder are left alone.

    Parameters
    ----------
    folder : str or os.PathLike
        the output folder (created later by the writer when missing).
    names : iterable of str
        file names inside ``folder``.
    overwrite : bool
    inputs : iterable of str
    what, overwrite_flag : str

    Returns
    -------
    list of str
        the full paths.

    Raises
    ------
    NotADirectoryError
        when ``folder`` is a file or lies under one.
    OutputExistsError
        when one of the files exists and ``overwrite`` is False (the message names it and
        counts the others).
    """
    if not isinstance(folder, (str, os.PathLike)) or isinstance(folder, bytes):
        raise TypeError(f"{what} must be a folder path (str), got {type(folder).__name__}.")
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"{what} {folder!r} is a file; it must be a folder (new or "
                                 "existing): choose another path.")
    _check_parent(os.path.join(folder, "x"), what)
    paths = [os.path.join(folder, name) for name in names]
    taken = [p for p in paths if os.path.lexists(p)]
    if taken and not overwrite:
        more = f" (and {len(taken) - 1} more of its outputs)" if len(taken) > 1 else ""
        raise OutputExistsError(f"{what} {folder!r} already holds {os.path.basename(taken[0])!r}"
                                f"{more} from an earlier run: choose another folder, or pass "
                                f"{overwrite_flag} to replace them.")
    for p in paths:
        check_output_file(p, overwrite=True, inputs=inputs, what=what)
    return paths


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class OutputLock:
    """An exclusive lock on an output path: the file ``PATH.lock``, created with ``O_EXCL``.

    It holds ``"<pid> <host>"`` of its owner. A lock left by a process that no longer runs on
    this host (or an empty one older than :data:`EMPTY_LOCK_GRACE_S`) is stale and taken over;
    a lock of a live process, or of another host, is refused. Use as a context manager; the
    lock file is removed on exit (only while it is still ours).

    Parameters
    ----------
    path : str or os.PathLike
        the output to protect; the lock is ``path + ".lock"``.
    what : str
        how the output is called in messages (e.g. ``"--out"``).

    Raises
    ------
    OutputLockedError
        (on entering) when another live run holds the lock.
    """

    SUFFIX = ".lock"

    def __init__(self, path, what="--out"):
        self.path = os.fspath(path)
        self.lock_path = self.path + self.SUFFIX
        self.what = what
        self.token = f"{os.getpid()} {socket.gethostname()}"
        self.took_over = None

    def _owner(self):
        """(pid, host, stale) of the current lock file, or None when it vanished."""
        try:
            with open(self.lock_path) as f:
                text = f.read().strip()
            age = time.time() - os.path.getmtime(self.lock_path)
        except FileNotFoundError:
            return None
        parts = text.split(maxsplit=1)
        try:
            pid, host = int(parts[0]), (parts[1] if len(parts) > 1 else "")
        except (IndexError, ValueError):
            return text, None, "?", age > EMPTY_LOCK_GRACE_S
        stale = host == socket.gethostname() and not _pid_alive(pid)
        return text, pid, host, stale

    def acquire(self):
        """Take the lock (see the class); returns ``self``."""
        os.makedirs(os.path.dirname(os.path.abspath(self.lock_path)), exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    continue  # released meanwhile: try again
                text, pid, host, stale = owner
                if not stale:
                    raise OutputLockedError(
                        f"{self.what} {self.path!r} is being written by another run (pid {pid} "
                        f"on {host}; lock file {self.lock_path!r}): wait for it to finish or "
                        "choose another path. If no such run exists, delete the lock file.")
                with open(self.lock_path) as f:  # re-read: take over only what we judged
                    if f.read().strip() != text:
                        continue
                os.remove(self.lock_path)
                self.took_over = pid
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.token + "\n")
            return self
        raise OutputLockedError(f"could not take the lock {self.lock_path!r} (another run keeps "
                                "taking it): try again, or choose another path.")

    def release(self):
        """Remove the lock file if it is still ours."""
        try:
            with open(self.lock_path) as f:
                mine = f.read().strip() == self.token
            if mine:
                os.remove(self.lock_path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
