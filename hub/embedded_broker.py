"""The embedded default's broker: kombu's filesystem transport, each message written whole.

kombu's filesystem `Channel._put` (checked against kombu 5.7.0) opens the message's final file
name in the queue folder and then writes it; a consumer's `_get` lists that folder and takes
any file with the queue's suffix — the flock it takes is advisory and `_get` moves the file
without it. A worker polling at that moment reads an empty or half-written message and dies of
a JSONDecodeError (celery/kombu#1551). Here a message is written under a name `_get` skips and
renamed into place (atomic on one filesystem), so a consumer sees it whole or not at all.
`_put` is the documented hook a kombu virtual transport implements, not a private detail.
"""

import os
import time
import uuid

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # kombu's name
        path = os.path.join(self.data_folder_out, name)
        partial = f"{path}.partial"  # not `<queue>.msg`: the consumers' listing skips it
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, path)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
