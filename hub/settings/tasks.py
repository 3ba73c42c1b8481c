"""Celery: the broker, the queues and how workers take tasks. Every Celery setting is here; each
says why it is set."""

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from hub.settings.base import VAR_DIR, env, refuse_placeholder
from hub.settings.generations import GENERATION_TIMEOUT_SECONDS

REDIS_URL = env.str("REDIS_URL", default="")
GENERATIONS_QUEUE = env.str("HUB_GENERATIONS_QUEUE", default="generations")
HOUSEKEEPING_QUEUE = env.str("HUB_HOUSEKEEPING_QUEUE", default="housekeeping")
BROKER_DIR = VAR_DIR / "broker"
# The filesystem broker ignores the host; naming one spares every worker kombu's "No hostname was
# supplied" warning.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://localhost/"
refuse_placeholder("REDIS_URL's password", urlsplit(REDIS_URL).password)
refuse_placeholder("CELERY_BROKER_URL's password", urlsplit(CELERY_BROKER_URL).password)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Embedded default: a broker that needs no server, shared by processes through a folder.
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT = "hub.embedded_broker:Transport"  # kombu's, each message written whole
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "control_folder": str(BROKER_DIR / "control"),
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False  # the filesystem transport has no fanout
elif CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = "hub.broker:Transport"  # kombu's, with its fixes (hub.infra.fastpaths.broker_waits)
    # No copy of each delivered message in Redis (kombu's "ack emulation": a MULTI/EXEC on
    # delivery and another on ack, ~16 % of a generation worker's busy samples in the sync-c32-0s
    # profile). It only lets Redis re-deliver a dead worker's messages after a visibility timeout
    # longer than any task, and the hub recovers those sooner itself: the lease (a running
    # attempt) and the sweeper's re-send (a queued one, GENERATION_RESEND_AFTER_SECONDS). The
    # worker still keeps what it took in memory: a warm shutdown puts back what it had not
    # started, and a dead prefork child's task goes back on the queue (reject_on_worker_lost).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"ack_emulation": False}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # The broker re-delivers an unacked message after this long. It must exceed the longest
        # task (the hard limit below), or a second worker starts a task that is still running.
        "visibility_timeout": GENERATION_TIMEOUT_SECONDS + 600,
    }
CELERY_TASK_IGNORE_RESULT = True  # outcomes live on the generation row, not in a result backend
# Celery keeps a result backend that is not thread-safe per thread, and under gevent a thread is a
# greenlet: the pool runs each task in a new one, so every task built its own disabled backend
# (~0.3 ms, 2.5 % of a generation worker's CPU in the sync-c32-0s profile). The disabled backend
# holds no state: one per process.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_SERIALIZER = "json"  # tasks take ids only; JSON is safe to deserialize and readable
CELERY_ACCEPT_CONTENT = ["json"]
# Ack after the work: a worker holds one message per task it runs (the prefetch credit below), and
# a warm shutdown or a dead prefork child puts the unfinished ones back on the queue.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...also when only the pool child dies (else it is acked and lost)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a slow paid call must not hold other queued work hostage
# Derived from the sync limit: the task finalizes and refunds on its own before the soft limit,
# which leaves room to clean up before the hard kill (enforced by the prefork pool; with the
# threads pool the task's own provider deadline and the sweeper bound the time).
CELERY_TASK_SOFT_TIME_LIMIT = GENERATION_TIMEOUT_SECONDS + 30
CELERY_TASK_TIME_LIMIT = GENERATION_TIMEOUT_SECONDS + 90
# Webhook deliveries have a queue of their own: deploy/bin/worker takes both queues, and a
# housekeeping worker (deploy/bin/housekeeping) can take them apart from paid work — the
# Kubernetes manifests run one, since KEDA may scale the generation workers to zero.
# (Generation tasks name their queue when they are sent: generations.services.generation_enqueue.)
CELERY_TASK_DEFAULT_QUEUE = HOUSEKEEPING_QUEUE
# Both queues are declared, so a worker started without --queues (`celery -A hub worker`, as
# Celery's own docs start one) takes the paid generations too, not only the default queue. Each
# is bound to an exchange of its own name, as Celery creates an undeclared queue.
CELERY_TASK_QUEUES = {name: {"exchange": name, "routing_key": name} for name in (GENERATIONS_QUEUE, HOUSEKEEPING_QUEUE)}
# The pool is chosen on the command line (`--pool threads`, see docs/operations.md): a worker_pool setting
# would silently override an explicit `--pool prefork`.
# Tasks a worker runs at once (`--concurrency` wins). Unset (or empty), the pool the worker starts
# with decides (hub.celery): WORKER_GREEN_CONCURRENCY greenlets for gevent, the CPUs for prefork and
# threads — `celery -A hub worker` is prefork, where a fixed 1,000 forked a thousand ~96 MiB
# processes. The worker writes its figure back here: the provider's HTTP pools hold that many.
_concurrency = env.str("CELERY_WORKER_CONCURRENCY", default="").strip()
if _concurrency and not (_concurrency.isdigit() and int(_concurrency) > 0):
    raise ImproperlyConfigured(
        f"CELERY_WORKER_CONCURRENCY={_concurrency!r} is not a number of tasks: leave it unset for the pool's default"
    )
CELERY_WORKER_CONCURRENCY = int(_concurrency) if _concurrency else None
WORKER_GREEN_CONCURRENCY = 1000  # greenlets: each call in flight waits on a socket, holding no thread
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
