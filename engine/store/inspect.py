"""docker-compatible views of stored images (pure: from a ResolvedImage to dicts and summaries)."""

from __future__ import annotations

from typing import Any

from engine.errors import InvalidReferenceError
from engine.oci.reference import Reference
from engine.store.layout import ResolvedImage
from engine.summaries import ImageSummary, LayerSummary

_DOCKER_CONFIG_KEYS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
    "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
    "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell",
)


def familiar(name: str) -> str:
    try:
        return Reference.parse(name).familiar
    except InvalidReferenceError:
        return name


def repo_digests(image: ResolvedImage) -> tuple[str, ...]:
    repos: set[str] = set(image.source_repositories)
    for name in image.names:
        try:
            repos.add(Reference.parse(name).name)
        except InvalidReferenceError:
            continue
    return tuple(sorted(f"{familiar(repo + ':x').rsplit(':', 1)[0]}@{image.manifest_digest}" for repo in repos))


def summary(image: ResolvedImage) -> ImageSummary:
    return ImageSummary(
        id=str(image.id),
        repo_tags=tuple(familiar(n) for n in image.names),
        repo_digests=repo_digests(image),
        manifest_digest=str(image.manifest_digest),
        created=image.config.created,
        size=image.size,
    )


def layers(image: ResolvedImage) -> list[LayerSummary]:
    """Each layer with the history entry that made it (empty-layer history entries in between)."""
    out: list[LayerSummary] = []
    history = list(image.config.history)
    diff_ids = image.config.diff_ids
    layer_index = 0
    for entry in history:
        if entry.empty_layer:
            out.append(LayerSummary("", "", 0, entry.created_by or "", empty_layer=True))
            continue
        if layer_index < len(image.manifest.layers):
            blob = image.manifest.layers[layer_index]
            diff = str(diff_ids[layer_index]) if layer_index < len(diff_ids) else ""
            out.append(LayerSummary(str(blob.digest), diff, blob.size, entry.created_by or ""))
            layer_index += 1
    for blob in image.manifest.layers[layer_index:]:
        diff = str(diff_ids[layer_index]) if layer_index < len(diff_ids) else ""
        out.append(LayerSummary(str(blob.digest), diff, blob.size, ""))
        layer_index += 1
    return out


def docker_inspect(image: ResolvedImage) -> dict[str, Any]:
    config = image.config
    run_config = dict(config.config)
    docker_config: dict[str, Any] = {key: run_config.get(key) for key in _DOCKER_CONFIG_KEYS}
    docker_config.update({
        "Hostname": run_config.get("Hostname", ""), "Domainname": run_config.get("Domainname", ""),
        "User": run_config.get("User", ""), "AttachStdin": False, "AttachStdout": False,
        "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Image": run_config.get("Image", ""), "WorkingDir": run_config.get("WorkingDir", ""),
        "OnBuild": run_config.get("OnBuild"), "Labels": run_config.get("Labels"),
    })
    for key in ("ExposedPorts", "Volumes", "Healthcheck", "StopSignal", "Shell", "ArgsEscaped"):
        if docker_config.get(key) is None:
            docker_config.pop(key, None)
    data = config.data
    return {
        "Id": str(image.id),
        "RepoTags": [familiar(n) for n in image.names],
        "RepoDigests": list(repo_digests(image)),
        "Parent": "",
        "Comment": next((h.comment for h in config.history if h.comment), ""),
        "Created": config.created or "",
        "DockerVersion": "",
        "Author": config.author or "",
        "Config": docker_config,
        "Architecture": data.get("architecture", ""),
        **({"Variant": data["variant"]} if data.get("variant") else {}),
        "Os": data.get("os", ""),
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in config.diff_ids]},
        "Metadata": {"LastTagTime": ""},
        "Descriptor": image.manifest_descriptor.to_json(),
    }


def history_rows(image: ResolvedImage) -> list[dict[str, Any]]:
    """docker history: newest first, with the layer id on the entries that made a layer."""
    rows = []
    for layer in reversed(layers(image)):
        rows.append({
            "id": layer.digest or "<missing>", "created_by": layer.created_by, "size": layer.size,
            "empty_layer": layer.empty_layer,
        })
    created = [h.created for h in image.config.history]
    for row, when in zip(rows, reversed(created), strict=False):
        row["created"] = when or ""
    return rows
