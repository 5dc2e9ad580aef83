"""The exceptions the package raises; each carries the library's status and message."""

# The C API's longattn_status values.
OK, INVALID_ARGUMENT, UNSUPPORTED, OVER_BUDGET, OUT_OF_MEMORY, DEVICE_ERROR, INTERNAL_ERROR = range(7)


class Error(Exception):
    """An error of the longattn library. `status` is the C API's longattn_status."""

    status = INTERNAL_ERROR

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidArgumentError(Error, ValueError):
    """An argument is not valid: the message names it and what is allowed."""

    status = INVALID_ARGUMENT


class UnsupportedError(Error):
    """Valid, but no path of this build and device runs it (the message says why per path)."""

    status = UNSUPPORTED


class OverBudgetError(Error):
    """Every path that could run it needs more transient memory than the budget."""

    status = OVER_BUDGET


class OutOfMemoryError(Error, MemoryError):
    status = OUT_OF_MEMORY


class DeviceError(Error):
    """The device (CUDA) reported an error."""

    status = DEVICE_ERROR


_BY_STATUS = {
    INVALID_ARGUMENT: InvalidArgumentError,
    UNSUPPORTED: UnsupportedError,
    OVER_BUDGET: OverBudgetError,
    OUT_OF_MEMORY: OutOfMemoryError,
    DEVICE_ERROR: DeviceError,
}


def from_status(status, message):
    return _BY_STATUS.get(status, Error)(message, status)
