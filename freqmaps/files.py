"""Files that are either whole or absent: a writer writes to `<name>.partial` beside the target, which is
renamed onto the target only once the writer returns, so a killed or failing write never leaves a truncated
file under the final name. And folders checked for writing before any compute."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from freqmaps.errors import UserInputError


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(temporary path), then rename the temporary file onto `path` (os.replace: atomic on one file
    system). On any error the temporary file is removed and the target is left as it was. Returns `path`."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def safe(name: str) -> str:
    """A name (e.g. an attack's) as a file name part: letters, digits, '-' and '_' kept, anything else '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def check_writable(directory: str | Path, option: str) -> Path:
    """Create `directory` (and its parents) and write and remove a file in it; a UserInputError naming the
    folder, the reason and the `option` that chose it, otherwise. Returns the folder."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / ".write_test", lambda path: path.write_text(""))
        (directory / ".write_test").unlink()
    except OSError as error:
        raise UserInputError(f"{option} {directory} is not writable ({error.strerror}); choose another with "
                             f"--{option}") from None
    return directory
