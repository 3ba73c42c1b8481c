"""The embedded broker: a consumer polling while messages are written sees each one whole."""

import threading

from kombu import Connection
from kombu.transport import filesystem

from hub.embedded_broker import Transport

PAYLOAD = "x" * 256 * 1024  # large enough that a write takes a while


def _race(transport, folder, messages: int = 200) -> tuple[list, list]:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    received, errors = [], []
    with Connection("filesystem://localhost/", transport=transport, transport_options=options) as conn:
        producer_channel, consumer_channel = conn.channel(), conn.channel()
        done = threading.Event()

        def consume():
            while not done.is_set() or len(received) + len(errors) < messages:
                try:
                    received.append(consumer_channel._get("q"))
                except filesystem.Empty:
                    if done.is_set() and len(received) + len(errors) >= messages:
                        return
                except ValueError as exc:  # a half-written message: JSONDecodeError
                    errors.append(exc)

        consumer = threading.Thread(target=consume)
        consumer.start()
        for index in range(messages):
            producer_channel._put("q", {"index": index, "body": PAYLOAD})
        done.set()
        consumer.join(timeout=60)
    return received, errors


def test_a_polling_consumer_never_reads_a_half_written_message(tmp_path):
    received, errors = _race(Transport, tmp_path)
    assert errors == []
    assert sorted(message["index"] for message in received) == list(range(200))
    assert all(message["body"] == PAYLOAD for message in received)
    assert not list(tmp_path.glob("*.partial"))
