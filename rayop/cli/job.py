"""`rayop job submit --name N [--cluster C | cluster flags] [--working-dir DIR] -- ENTRYPOINT`.

It creates a RayJob and follows it to the end: a status line (deployment and job status, elapsed time) on
stderr, the driver's output on stdout, and the job's result as the exit code (0 on SUCCEEDED).

With `--working-dir` the RayJob is in InteractiveMode, as KubeRay's `kubectl ray job submit` makes it: once
the operator reports the cluster ready (`Waiting`), this command zips the directory, uploads it to the
head's dashboard through the API server's service proxy (no port-forward, no cluster DNS needed),
submits the job with that package as its `working_dir`, and writes the submission id to `spec.jobId`;
the operator then tracks the job as for any other mode. Without it, the operator submits the entrypoint
itself (`--submission-mode`, K8sJobMode by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Annotated, Any

import typer
import yaml

from rayop.api.kinds import RAYCLUSTERS, RAYJOBS
from rayop.base.names import random_suffix
from rayop.base.objects import status_of
from rayop.builders import cluster as cl
from rayop.builders.generate import DEFAULT_GROUP, DEFAULT_RAY_VERSION, ShapeError, build_rayjob, check_shape
from rayop.builders.rayjob import INTERACTIVE_MODE, K8S_JOB_MODE, SUBMISSION_MODES
from rayop.cli import create as cf
from rayop.cli.jobwatch import JOB_TERMINAL, StatusLine, entrypoint_of, outcome, status_line
from rayop.cli.kube import (
    CliError,
    ContextOpt,
    Dump,
    Kube,
    KubeconfigOpt,
    NamespaceOpt,
    Target,
    complete_names,
    connect,
    render,
    run,
)
from rayop.ray.dashboard import DashboardClient, DashboardError, JobNotFound
from rayop.ray.packages import Package, PackageError, package_directory

app = typer.Typer(no_args_is_help=True, help="Run Ray jobs.")

POLL_SECONDS = 1.0
# After the job ends, how long the log stream may take to deliver its last lines.
LOG_DRAIN_SECONDS = 30.0


class Submission:
    """The interactive-mode submission: upload the working directory and submit, once."""

    def __init__(
        self, name: str, entrypoint: str, package: Package | None, runtime_env: dict[str, Any]
    ) -> None:
        self.name = name
        self.entrypoint = entrypoint
        self.package = package
        self.runtime_env = runtime_env
        self.submission_id = ""

    async def submit(self, kube: Kube, job: dict[str, Any], line: StatusLine) -> str:
        st = status_of(job)
        cluster = await kube.api.get(RAYCLUSTERS, str(st.get("rayClusterName")), kube.namespace)
        dash = DashboardClient.via_proxy(kube.api, kube.namespace, cl.head_service_name(cluster), timeout=60)
        env = dict(self.runtime_env)
        if self.package is not None:
            pkg = self.package
            if not await dash.package_exists(pkg.protocol, pkg.name):
                files = f"{pkg.files} file" + ("s" if pkg.files != 1 else "")
                line.note(f"uploading {files} ({len(pkg.data) / 1024:.0f} KiB) as {pkg.uri}")
                await dash.upload_package(pkg.protocol, pkg.name, pkg.data)
            env["working_dir"] = pkg.uri
        submission_id = f"{self.name}-{random_suffix(5)}"
        request: dict[str, Any] = {"entrypoint": self.entrypoint, "submission_id": submission_id}
        if env:
            request["runtime_env"] = env
        await dash.submit_job(request)
        # The operator moves the RayJob from Waiting to Running once spec.jobId names the submission.
        await kube.api.patch(RAYJOBS, self.name, {"spec": {"jobId": submission_id}}, kube.namespace)
        self.submission_id = submission_id
        line.note(f"submitted Ray job {submission_id}")
        return submission_id


async def _stream_logs(dash: DashboardClient, job_id: str, line: StatusLine, done: asyncio.Event) -> None:
    """The driver's output: the dashboard's log tail (a WebSocket through the API server), or, if that
    cannot be opened, the whole log polled and printed as it grows."""
    printed = 0
    try:
        async for text in dash.tail_job_logs(job_id):
            line.log(text)
            printed += len(text)
        return
    except (DashboardError, OSError) as e:
        if printed:
            line.note(f"log stream broke ({e}); the rest follows when the job ends")
    while True:
        finished = done.is_set()
        try:
            logs = await dash.get_job_logs(job_id)
        except JobNotFound:
            logs = ""
        if len(logs) > printed:
            line.log(logs[printed:])
            printed = len(logs)
        if finished:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 2.0)


async def follow(
    kube: Kube,
    name: str,
    line: StatusLine,
    submission: Submission | None,
    cluster_timeout: float,
) -> int:
    """Follow the RayJob until it has a result; returns the exit code."""
    t0 = time.monotonic()
    logs_task: asyncio.Task[None] | None = None
    dash: DashboardClient | None = None
    done = asyncio.Event()
    try:
        while True:
            job = await kube.api.get(RAYJOBS, name, kube.namespace)
            st = status_of(job)
            elapsed = time.monotonic() - t0
            line.update(status_line(job, elapsed), f"{st.get('jobDeploymentStatus')}/{st.get('jobStatus')}")
            deployment = str(st.get("jobDeploymentStatus") or "")
            if submission is not None and not submission.submission_id:
                if deployment == "Waiting":
                    await submission.submit(kube, job, line)
                    continue
                if deployment in ("", "New", "Initializing") and elapsed > cluster_timeout:
                    raise CliError(
                        f"RayJob {name}: its cluster was not ready after {cluster_timeout:.0f} s "
                        f"(`rayop get nodes -c {st.get('rayClusterName', '')}` shows why); "
                        f"`rayop delete job {name}` removes it"
                    )
            job_id = str(st.get("jobId") or "")
            if (
                logs_task is None
                and job_id
                and st.get("dashboardURL")
                and st.get("jobStatus") in ("PENDING", "RUNNING", *JOB_TERMINAL)
            ):
                cluster = await kube.api.get(RAYCLUSTERS, str(st.get("rayClusterName")), kube.namespace)
                dash = DashboardClient.via_proxy(
                    kube.api, kube.namespace, cl.head_service_name(cluster), timeout=60
                )
                logs_task = asyncio.create_task(_stream_logs(dash, job_id, line, done))
            driver_code = None
            if st.get("jobStatus") == "FAILED" and dash is not None and job_id:
                with contextlib.suppress(DashboardError):
                    driver_code = (await dash.get_job(job_id)).driver_exit_code
            result = outcome(job, driver_code)
            if result is not None:
                done.set()
                if logs_task is not None:
                    with contextlib.suppress(TimeoutError, DashboardError, OSError):
                        await asyncio.wait_for(logs_task, LOG_DRAIN_SECONDS)
                line.close()
                typer.echo(result.message, err=True)
                return result.code
            await asyncio.sleep(POLL_SECONDS)
    finally:
        if logs_task is not None and not logs_task.done():
            logs_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await logs_task
        line.close()


def _runtime_env(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        env = json.loads(text)
    except ValueError as e:
        raise CliError(f"--runtime-env-json is not JSON: {e}") from None
    if not isinstance(env, dict):
        raise CliError("--runtime-env-json must be a JSON object")
    return env


SHAPE_PARAMS = (
    "ray_version",
    "image",
    "head_cpu",
    "head_memory",
    "head_gpu",
    "worker_group",
    "worker_replicas",
    "worker_cpu",
    "worker_memory",
    "worker_gpu",
    "autoscale",
    "min_replicas",
    "max_replicas",
    "labels",
    "shutdown_after_finish",
)


@app.command("submit")
def submit(
    ctx: typer.Context,
    entrypoint: Annotated[
        list[str],
        typer.Argument(
            metavar="-- ENTRYPOINT...", help="The command the driver runs, after `--`.", show_default=False
        ),
    ],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Name of the RayJob.")],
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="CLUSTER",
            help="Run on this existing RayCluster (else a new one from the cluster flags).",
            autocompletion=complete_names(RAYCLUSTERS),
            show_default=False,
        ),
    ] = None,
    working_dir: Annotated[
        str | None,
        typer.Option(
            "--working-dir",
            metavar="DIR",
            help="Upload this local directory as the job's working directory (InteractiveMode).",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="PATTERN",
            help="Leave matching files out of --working-dir (repeat it).",
            show_default=False,
        ),
    ] = None,
    runtime_env_json: Annotated[
        str | None,
        typer.Option(
            "--runtime-env-json",
            metavar="JSON",
            help="Ray runtime environment (pip, env_vars...).",
            show_default=False,
        ),
    ] = None,
    submission_mode: Annotated[
        str | None,
        typer.Option(
            "--submission-mode",
            metavar="MODE",
            help="Without --working-dir: K8sJobMode (default), HTTPMode or SidecarMode.",
            show_default=False,
        ),
    ] = None,
    shutdown_after_finish: Annotated[
        bool, typer.Option("--shutdown-after-finish", help="Delete the job's new cluster when the job ends.")
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once the job is submitted, without following it.")
    ] = False,
    cluster_timeout: Annotated[
        float, typer.Option("--cluster-timeout", metavar="SECONDS", help="How long to wait for the cluster.")
    ] = 600.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the RayJob instead of creating it.")
    ] = False,
    output: Annotated[
        Dump | None,
        typer.Option("-o", "--output", help="With --dry-run: yaml (default) or json.", show_default=False),
    ] = None,
    ray_version: cf.RayVersionOpt = DEFAULT_RAY_VERSION,
    image: cf.ImageOpt = None,
    head_cpu: cf.HeadCpuOpt = "2",
    head_memory: cf.HeadMemoryOpt = "4Gi",
    head_gpu: cf.HeadGpuOpt = "0",
    worker_group: cf.WorkerGroupOpt = DEFAULT_GROUP,
    worker_replicas: cf.WorkerReplicasOpt = 1,
    worker_cpu: cf.WorkerCpuOpt = "2",
    worker_memory: cf.WorkerMemoryOpt = "4Gi",
    worker_gpu: cf.WorkerGpuOpt = "0",
    autoscale: cf.AutoscaleOpt = False,
    min_replicas: cf.MinOpt = None,
    max_replicas: cf.MaxOpt = None,
    labels: cf.LabelOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Create a RayJob, stream the driver's output with a status line, and exit with its result
    (0 on SUCCEEDED, the driver's exit code on FAILED).

    Example: rayop job submit --name hello --working-dir ./app -- python main.py
    """
    try:
        if not entrypoint:
            raise CliError("give the entrypoint after `--`, e.g. -- python main.py")
        interactive = working_dir is not None
        if cluster is not None:
            given = [
                "--" + p.replace("_", "-").replace("min-replicas", "min").replace("max-replicas", "max")
                for p in SHAPE_PARAMS
                if getattr(ctx.get_parameter_source(p), "name", "") == "COMMANDLINE"
            ]
            if given:
                raise CliError(
                    f"--cluster runs the job on an existing RayCluster; {', '.join(given)} would be ignored"
                )
        if interactive and submission_mode not in (None, INTERACTIVE_MODE):
            raise CliError(
                "--working-dir uploads the directory itself: it needs InteractiveMode, not "
                + str(submission_mode)
            )
        mode = INTERACTIVE_MODE if interactive else (submission_mode or K8S_JOB_MODE)
        if mode not in SUBMISSION_MODES:
            raise CliError(f"--submission-mode {mode} must be one of {', '.join(SUBMISSION_MODES)}")
        env = _runtime_env(runtime_env_json)
        shape = None
        if cluster is None:
            shape = cf.shape_from(
                ray_version=ray_version,
                image=image,
                head_cpu=head_cpu,
                head_memory=head_memory,
                head_gpu=head_gpu,
                worker_group=worker_group,
                worker_replicas=worker_replicas,
                worker_cpu=worker_cpu,
                worker_memory=worker_memory,
                worker_gpu=worker_gpu,
                autoscale=autoscale,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                labels=labels,
            )
            errs = check_shape(shape)
            if errs:
                raise ShapeError("; ".join(errs))
        package = package_directory(working_dir, exclude or ()) if working_dir is not None else None
        command = entrypoint_of(entrypoint)
        runtime_env_yaml = "" if interactive or not env else yaml.safe_dump(env, sort_keys=False)
        target = Target(kubeconfig, context, namespace)
    except (CliError, ShapeError, PackageError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None

    def manifest(ns: str) -> dict[str, Any]:
        return build_rayjob(
            name,
            ns,
            entrypoint=command,
            submission_mode=mode,
            shape=shape,
            cluster=cluster,
            shutdown_after_finish=shutdown_after_finish,
            runtime_env_yaml=runtime_env_yaml,
        )

    if dry_run:
        ns = namespace
        if ns is None:
            try:
                ns = target.config().namespace
            except Exception:
                ns = "default"
        sys.stdout.write(render(manifest(ns), output or Dump.yaml))
        return

    async def main() -> int:
        async with connect(target, timeout=60) as kube:
            if cluster is not None:
                await kube.api.get(RAYCLUSTERS, cluster, kube.namespace)  # a clear "not found" up front
            await kube.api.create(
                RAYJOBS, manifest(kube.namespace), kube.namespace, fieldManager=cf.FIELD_MANAGER
            )
            typer.echo(f"rayjob.ray.io/{name} created in namespace {kube.namespace}", err=True)
            submission = Submission(name, command, package, env) if interactive else None
            line = StatusLine()
            if no_wait and submission is None:
                return 0
            try:
                if no_wait:
                    return await _submit_only(kube, name, line, submission, cluster_timeout)
                return await follow(kube, name, line, submission, cluster_timeout)
            except asyncio.CancelledError:
                line.close()
                typer.echo(
                    f"stopped following; RayJob {name} goes on (`rayop get jobs {name}`, "
                    f"`rayop logs job/{name} -f`, `rayop delete job {name}`)",
                    err=True,
                )
                raise

    code = run(main())
    raise typer.Exit(code)


async def _submit_only(
    kube: Kube, name: str, line: StatusLine, submission: Submission | None, cluster_timeout: float
) -> int:
    assert submission is not None
    t0 = time.monotonic()
    while not submission.submission_id:
        job = await kube.api.get(RAYJOBS, name, kube.namespace)
        st = status_of(job)
        line.update(status_line(job, time.monotonic() - t0), str(st.get("jobDeploymentStatus")))
        if st.get("jobDeploymentStatus") == "Waiting":
            await submission.submit(kube, job, line)
            break
        result = outcome(job)
        if result is not None:
            line.close()
            typer.echo(result.message, err=True)
            return result.code
        if time.monotonic() - t0 > cluster_timeout:
            raise CliError(f"RayJob {name}: its cluster was not ready after {cluster_timeout:.0f} s")
        await asyncio.sleep(POLL_SECONDS)
    line.close()
    return 0
