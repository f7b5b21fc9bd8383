"""A private Kafka broker with SASL_SSL and SCRAM-SHA-512, for the security tests.

The shared dev broker (``dev/services.sh``) speaks PLAINTEXT and must not be reconfigured, so
this module starts a second single-node KRaft broker from the same jar cache, in a temporary
directory and on free ports of 127.0.0.1:

* a CA and a broker certificate (SAN ``IP:127.0.0.1``, ``DNS:localhost``) made with openssl,
  the broker's key and chain in a PKCS#12 keystore;
* a client listener ``SASL_SSL`` (SCRAM-SHA-512 only), also used between brokers (as ``admin``),
  and a ``PLAINTEXT`` controller listener on 127.0.0.1;
* storage formatted with ``kafka.tools.StorageTool format --standalone --add-scram ...``, so
  the SCRAM credentials of ``admin`` and of the client user exist before the first start.

Readiness is a real metadata request over SASL_SSL (a confluent-kafka AdminClient). The broker
runs once per test session (shared by every module that asks for it) and is stopped at exit;
it also dies with the test process (``setpriv --pdeathsig``). Under ``CI=true`` a broker that
does not start fails the tests; locally they are skipped with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import run_cli, terminate

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "dev" / "services.sh"
KAFKA_LIBS = ROOT / ".dev" / "kafka" / "libs"
LOG4J = ROOT / "dev" / "kafka" / "log4j2.properties"
LOG4J_TOOLS = ROOT / "dev" / "kafka" / "log4j2-tools.properties"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MECHANISM = "SCRAM-SHA-512"
READY_TIMEOUT = 90.0
#: Settings of the test process that must not leak into a child of the security tests: each
#: child gets exactly the broker security, outbox, sink and database its test gives it.
OUTER_SETTINGS = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CA_LOCATION",
    "PROVIDER_EVENTS_OUTBOX",
    "PROVIDER_EVENTS_SINK",
    "DATABASE_URL",
)


class SecureKafkaError(RuntimeError):
    """The SASL_SSL broker could not be set up; the message holds the broker's log tail."""


@dataclass
class SecureKafka:
    """A running SASL_SSL broker and the credentials to use it."""

    bootstrap: str
    ca_location: Path
    username: str
    password: str
    admin_username: str
    admin_password: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def client_config(self, *, password: str | None = None) -> dict[str, Any]:
        """librdkafka settings for the client user (or another ``password`` for it)."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": MECHANISM,
            "sasl.username": self.username,
            "sasl.password": self.password if password is None else password,
            "ssl.ca.location": str(self.ca_location),
        }

    def env(self, *, password: str | None = None) -> dict[str, str]:
        """The provider-events environment variables that point a process at this broker."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": self.username,
            "KAFKA_SASL_PASSWORD": self.password if password is None else password,
            "KAFKA_SSL_CA_LOCATION": str(self.ca_location),
        }

    def create_topic(self, name: str, partitions: int = 3) -> str:
        """Create ``name`` over SASL_SSL and wait until it has leaders."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.client_config())
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=30
        )
        futures[name].result(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = admin.list_topics(name, timeout=10)
            info = meta.topics.get(name)
            if info and info.error is None and all(p.leader >= 0 for p in info.partitions.values()):
                return name
            time.sleep(0.2)
        raise SecureKafkaError(f"topic {name} has no leaders after 30s")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the broker's log files (for failure messages)."""
        out = []
        for path in (self.workdir / "logs" / "kafka-server.log", self.workdir / "kafka.out"):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"---- {path.name} ----\n" + "\n".join(t[:400] for t in text))
        return "\n".join(out)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), SIGKILL after ``timeout``; then remove the workdir."""
        proc, self.process = self.process, None
        terminate(proc, timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)


def child_env(**settings: str) -> dict[str, str]:
    """This process's environment less :data:`OUTER_SETTINGS`, running this tree's ``src``,
    with ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in OUTER_SETTINGS}
    env.update(PYTHONPATH=str(ROOT / "src"), **settings)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``provider-events ARGS`` in ``env`` from the repository root, output captured as text."""
    return run_cli(*args, env=env, cwd=ROOT, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], cwd: Path, timeout: float = 120.0) -> None:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise SecureKafkaError(
            f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )


def make_certificates(folder: Path, keystore_password: str) -> tuple[Path, Path]:
    """A CA (``ca.pem``) and a broker keystore (``broker.p12``) for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SecureKafkaError("openssl not found (apt-get install openssl)")
    _run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=provider-events test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        folder,
    )
    _run(
        [
            openssl,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "broker.key",
            "-out",
            "broker.csr",
        ],
        folder,
    )
    (folder / "broker.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    _run(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            "broker.ext",
            "-out",
            "broker.pem",
        ],
        folder,
    )
    _run(
        [
            openssl,
            "pkcs12",
            "-export",
            "-in",
            "broker.pem",
            "-inkey",
            "broker.key",
            "-certfile",
            "ca.pem",
            "-name",
            "broker",
            "-passout",
            f"pass:{keystore_password}",
            "-out",
            "broker.p12",
        ],
        folder,
    )
    for secret_file in ("ca.key", "broker.key"):
        (folder / secret_file).chmod(0o600)
    return folder / "ca.pem", folder / "broker.p12"


def _server_properties(
    work: Path,
    port: int,
    controller_port: int,
    ca: Path,
    keystore: Path,
    keystore_password: str,
    admin: tuple[str, str],
) -> str:
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{admin[0]}" password="{admin[1]}";'
    )
    return f"""\
# provider-events security tests: a private SASL_SSL broker (tests/integration/_secure_kafka.py)
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms={MECHANISM}
sasl.mechanism.inter.broker.protocol={MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={keystore_password}
ssl.key.password={keystore_password}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
ssl.client.auth=none
log.dirs={work / "data"}
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def _die_with_parent() -> list[str]:
    """A command prefix that makes the broker die with the test process (util-linux setpriv)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _ensure_jars() -> None:
    if any(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        return
    # `up` resolves the jar cache (and is a no-op for services already running).
    proc = subprocess.run(
        [str(SERVICES), "up"], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0 or not any(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        raise SecureKafkaError(f"dev/services.sh up failed: {proc.stderr[-2000:]}")


def _wait_ready(kafka: SecureKafka, deadline: float) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {**kafka.client_config(), "socket.connection.setup.timeout.ms": 2000, "logger": _quiet()}
    )
    last = "no answer"
    while time.monotonic() < deadline:
        assert kafka.process is not None
        if kafka.process.poll() is not None:
            raise SecureKafkaError(
                f"the SASL_SSL broker exited ({kafka.process.returncode})\n{kafka.log_tail()}"
            )
        try:
            meta = admin.list_topics(timeout=2)
            if meta.brokers:
                return
        except KafkaException as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SecureKafkaError(f"SASL_SSL broker not ready ({last})\n{kafka.log_tail()}")


def _quiet() -> Any:
    import logging

    logger = logging.getLogger("tests.secure_kafka.client")
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    return logger


def start_secure_kafka(workdir: Path | None = None) -> SecureKafka:
    """Make certificates, format storage with SCRAM users, start the broker, wait until ready."""
    _ensure_jars()
    java = shutil.which("java")
    if java is None:
        raise SecureKafkaError("java not found (dev/services.sh up installs it)")
    work = workdir or Path(tempfile.mkdtemp(prefix="provider-events-sasl-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    # Hex passwords: nothing that needs quoting in JAAS or in --add-scram's [k=v,...] syntax.
    keystore_password = secrets.token_hex(12)
    kafka = SecureKafka(
        bootstrap="",
        ca_location=work / "tls" / "ca.pem",
        username=f"pe-client-{secrets.token_hex(3)}",
        password=f"SaslClientPw{secrets.token_hex(12)}",
        admin_username="admin",
        admin_password=f"SaslAdminPw{secrets.token_hex(12)}",
        workdir=work,
    )
    try:
        ca, keystore = make_certificates(work / "tls", keystore_password)
        port, controller_port = free_port(), free_port()
        while controller_port == port:
            controller_port = free_port()
        kafka.bootstrap = f"127.0.0.1:{port}"
        conf = work / "server.properties"
        conf.write_text(
            _server_properties(
                work,
                port,
                controller_port,
                ca,
                keystore,
                keystore_password,
                (kafka.admin_username, kafka.admin_password),
            )
        )
        conf.chmod(0o600)
        classpath = f"{KAFKA_LIBS}/*"
        _run(
            [
                java,
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J_TOOLS}",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                uuid.uuid4().hex[:22],
                "-c",
                str(conf),
                "--standalone",
                "--add-scram",
                f"{MECHANISM}=[name={kafka.admin_username},password={kafka.admin_password}]",
                "--add-scram",
                f"{MECHANISM}=[name={kafka.username},password={kafka.password}]",
            ],
            work,
        )
        out = (work / "kafka.out").open("ab")
        kafka.process = subprocess.Popen(
            [
                *_die_with_parent(),
                java,
                "-Xms128m",
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={work / 'logs'}",
                f"-Dlog4j2.configurationFile={LOG4J}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(conf),
            ],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        _wait_ready(kafka, time.monotonic() + READY_TIMEOUT)
    except BaseException:
        kafka.stop()
        raise
    return kafka


_shared: SecureKafka | None = None
_failure: str | None = None


def shared_secure_kafka() -> SecureKafka:
    """The session's SASL_SSL broker, started on first use and stopped when the process exits."""
    global _shared, _failure
    if _shared is None and _failure is None:
        try:
            _shared = start_secure_kafka()
            atexit.register(_shared.stop)
        except (SecureKafkaError, OSError, subprocess.SubprocessError) as exc:
            _failure = str(exc)
    if _failure is not None:
        message = f"SASL_SSL test broker unavailable: {_failure}"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    assert _shared is not None
    return _shared
