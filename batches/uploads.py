"""Upload size capped while the request is read, not after."""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler


def megabytes(size: int) -> str:
    """A byte limit as people read it: 20971520 -> "20 MB"."""
    return f"{size / (1024 * 1024):g} MB"


class UploadSizeCap(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: passes on at most MAX_UPLOAD_BYTES + 1 bytes of each file.

    The rest of an oversized file is read off the connection and dropped, never kept in memory
    or on disk; the byte over the limit is what makes the photo check refuse it as
    `too_large_bytes` with the usual message.
    """

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        allowed = settings.MAX_UPLOAD_BYTES + 1 - self.received
        self.received += len(raw_data)
        if allowed <= 0:
            return None  # later handlers never see this chunk
        return raw_data[:allowed]

    def file_complete(self, file_size):
        return None  # the next handler (memory or temporary file) makes the file
