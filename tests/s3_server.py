"""Start a real S3-protocol server (moto) on loopback for the test suite.

Prints `export …` lines for the shell; the server runs detached until killed (pid file).
"""

import os
import socket
import subprocess
import sys
import time

import boto3
import botocore.exceptions

BUCKET = "hub-test-images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(pid_file: str) -> None:
    port = free_port()
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with open(pid_file, "w") as f:
        f.write(str(proc.pid))
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    for _ in range(100):
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except botocore.exceptions.EndpointConnectionError:  # not listening yet
            time.sleep(0.1)
    else:
        raise SystemExit("moto server did not start")
    print(
        f"export AWS_STORAGE_BUCKET_NAME={BUCKET} AWS_S3_ENDPOINT_URL={endpoint} "
        "AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_S3_REGION_NAME=us-east-1"
    )


if __name__ == "__main__":
    main(sys.argv[1])
