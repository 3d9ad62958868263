"""Errors a user can act on. The CLI maps each class to an exit code and prints one paragraph."""


class ParityError(Exception):
    """Base class: the message names the input (file, symbol, field) and what to do."""

    exit_code = 2


class ParityInputError(ParityError):
    """Bad data, registry, config or CLI argument (exit code 2)."""


class ArtifactIntegrityError(ParityError):
    """A stored artifact, snapshot or index does not match its recorded hash (exit code 3)."""

    exit_code = 3


class ParityStorageError(ParityError):
    """The artifact store cannot be written (permissions, disk) (exit code 4)."""

    exit_code = 4
