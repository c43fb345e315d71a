"""What a backup's metadata may name. A metadata file in db_backup/ says which dump it describes ("file"),
and retention deletes, a restore reads and a copy to another host writes by that name: so it must be a
plain file beside the metadata, never a path. Metadata naming anything else is ignored (and reported by
backup.list_backups); backup_path checks once more wherever a path is made from it."""
from __future__ import annotations

import posixpath
import re

from ...errors import StepError
from ...layout import Layout

# a backup's name: what layout.backup_name makes (letters, digits, '_', '-', '.'), never a path
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
EXTENSIONS = (".sql.gz", ".sqlite3.gz")


def metadata_problem(meta: dict, filename: str) -> str | None:
    """Why a metadata file cannot be a backup's: its name must be its own file name (without .json), its
    file that name with a backup's extension."""
    name, file = meta.get("name"), meta.get("file")
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name or filename != f"{name}.json":
        return f'its "name" {name!r} is not its own file name'
    if not isinstance(file, str) or file not in [name + ext for ext in EXTENSIONS]:
        return f'its "file" {file!r} is not {name}{EXTENSIONS[0]} or {name}{EXTENSIONS[1]} beside it'
    return None


def backup_path(layout: Layout, meta: dict) -> str:
    """db_backup/<file> of a listed backup, checked once more (never a path outside db_backup/)."""
    if metadata_problem(meta, f"{meta.get('name')}.json"):
        raise StepError(f"backup metadata {meta.get('name')!r} names {meta.get('file')!r}, which is not a file "
                        f"of {layout.backups}; it is not used")
    return posixpath.join(layout.backups, meta["file"])
