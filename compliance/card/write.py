"""Write the card: rewrite a local README.md in place, or open a pull request on the Hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from compliance.card.build import CardError, CardUpdate, apply_report, load_report_dir, parse_card
from compliance.constants import HUB_METADATA_MAX_BYTES
from compliance.documents import DocumentError, decode_text, document_errors, read_capped
from compliance.io import atomic_write_text

#: Where the report's files go in a Hub repository, next to the card that links to them.
HUB_REPORT_FOLDER = "safety"
REPORT_FILES = ("report.json", "report.intoto.json", "report.pdf")

#: How our commits and pull requests on the Hub are titled (a rerun finds its own open pull request by it).
COMMIT_TITLE = "Add safety re-evaluation"


def update_local_card(report_dir: str | Path, model_dir: str | Path,
                      report_url: Optional[str] = None) -> CardUpdate:
    """Write ``report_dir``'s results into ``model_dir/README.md`` in place.

    Everything the card had is kept; results written by an earlier run are replaced, so a second
    run with the same report changes nothing (the file is not rewritten at all).

    Args:
        report_dir: the folder ``compliance report`` wrote (or its ``report.json``).
        model_dir: the model folder whose ``README.md`` is updated (created if missing).
        report_url: where readers find the report; by default the path of ``report.json``
            relative to the model folder.
    """
    report, data, folder = load_report_dir(report_dir)
    model = Path(model_dir)
    if not model.is_dir():
        raise CardError(f"model folder {model} not found")
    readme = model / "README.md"
    original = _read_card(readme) if readme.is_file() else ""
    card = parse_card(original, str(readme))
    url = report_url or Path(os.path.relpath(folder.resolve() / "report.json", model.resolve())).as_posix()
    n = apply_report(card, report, data, url, signed=(folder / "report.intoto.json").is_file(),
                     model_name=model.resolve().name)
    content = str(card)
    changed = content != original
    if changed:
        atomic_write_text(readme, content)
    return CardUpdate(target=str(readme), changed=changed, n_results=n, content=content)


def _read_card(readme: Path) -> str:
    """A local card's text: UTF-8, as the Hub keeps cards (it is rewritten as UTF-8)."""
    with document_errors(CardError, str(readme), "fix it",
                         after=", then run this again (the file was left untouched)"):
        return decode_text(read_capped(readme, HUB_METADATA_MAX_BYTES))


def update_hub_card(report_dir: str | Path, repo_id: str, create_pr: bool = True, revision: Optional[str] = None,
                    token: Optional[str] = None, report_url: Optional[str] = None,
                    upload_report: bool = True) -> CardUpdate:
    """Write ``report_dir``'s results into the card of Hub repository ``repo_id``.

    Opens a pull request by default; ``create_pr=False`` commits directly. The report's files go
    into ``safety/`` in the same commit, and the card links to them. Nothing is committed when
    the card already holds exactly these results, or when an open pull request of ours already
    holds exactly these files (its URL is returned as ``pr_url``, with ``changed`` False).

    Args:
        report_dir: the folder ``compliance report`` wrote.
        repo_id: ``org/name``.
        create_pr: open a pull request instead of committing to ``revision``.
        revision: branch to read the card from and commit to (default ``main``).
        token: Hub token (default: the stored token or ``HF_TOKEN``).
        report_url: where readers find the report (default: ``report.json`` in the repository).
        upload_report: commit the report's files next to the card.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    report, data, folder = load_report_dir(report_dir)
    api = HfApi(token=token)
    branch = revision or "main"
    try:
        try:
            path = hf_hub_download(repo_id, "README.md", revision=branch, token=token)
            original = decode_text(Path(path).read_bytes())
        except EntryNotFoundError:
            original = ""
        card = parse_card(original, f"{repo_id}@{branch}:README.md")
        url = report_url or f"{api.endpoint}/{repo_id}/blob/{branch}/{HUB_REPORT_FOLDER}/report.json"
        n = apply_report(card, report, data, url, signed=(folder / "report.intoto.json").is_file(),
                         model_name=repo_id.split("/")[-1])
        content = str(card)
        if content == original:
            return CardUpdate(target=repo_id, changed=False, n_results=n, content=content)
        files = {"README.md": content.encode("utf-8")}
        if upload_report:
            files.update({f"{HUB_REPORT_FOLDER}/{name}": (folder / name).read_bytes()
                          for name in REPORT_FILES if (folder / name).is_file()})
        if create_pr:
            open_pr = _open_pull_request_with(api, repo_id, files, token)
            if open_pr is not None:  # running again before the first one is merged opens no duplicate
                return CardUpdate(target=repo_id, changed=False, n_results=n, content=content, pr_url=open_pr)
        info = api.create_commit(
            repo_id, [CommitOperationAdd(path, data) for path, data in files.items()], revision=branch,
            create_pr=create_pr,
            commit_message=f"{COMMIT_TITLE} ({report['summary']['verdict']}, policy {report['policy']['name']})",
            commit_description=f"Results of `compliance` report {report['report_id']}, written through "
                               "huggingface_hub's card API. Self-reported: not verified by the Hub.",
        )
    except DocumentError as exc:
        raise CardError(f"{repo_id}@{branch}:README.md {exc}: fix the card on the Hub, then run this again") from None
    except OfflineModeIsEnabled:
        raise CardError(f"cannot reach the Hub for {repo_id}: offline mode is on (HF_HUB_OFFLINE=1)") from None
    except RepositoryNotFoundError:
        raise CardError(f"Hub repository {repo_id} not found, or your token has no access to it") from None
    except RevisionNotFoundError:
        raise CardError(f"Hub repository {repo_id} has no revision {branch!r}") from None
    except HfHubHTTPError as exc:
        raise CardError(f"the Hub refused the card update for {repo_id}: {str(exc).splitlines()[0]}") from None
    return CardUpdate(target=repo_id, changed=True, n_results=n, content=content,
                      pr_url=info.pr_url, commit_url=info.commit_url)


def _open_pull_request_with(api, repo_id: str, files: dict[str, bytes], token: Optional[str]) -> Optional[str]:
    """The URL of an open pull request of ours on ``repo_id`` that already holds exactly ``files``, if any."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for pr in api.get_repo_discussions(repo_id, discussion_type="pull_request"):
        if pr.status not in ("open", "draft") or not pr.title.startswith(COMMIT_TITLE):
            continue
        try:
            same = all(Path(hf_hub_download(repo_id, path, revision=pr.git_reference, token=token)).read_bytes() == data
                       for path, data in files.items())
        except EntryNotFoundError:
            continue
        if same:
            return pr.url
    return None
