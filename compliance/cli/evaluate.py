"""Commands that evaluate and make models: report, adapt, lineage, policies."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.tree import Tree

from compliance.cli.app import TSA_HELP, app, out, plain
from compliance.constants import BUILTIN_MODEL_ID, ENV_OPENAI_API_KEY

_VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow"}


@app.command()
def report(
    model: str = typer.Argument(..., help=f"Fine-tuned model: a Hub id (org/name[@revision]), a local Hugging Face folder, or '{BUILTIN_MODEL_ID}'."),
    policy: str = typer.Option("healthcare", "--policy", "-p",
                               help="Policy name (healthcare, legal, finance, general) or a policy .yaml file."),
    base: Optional[str] = typer.Option(None, "--base", help="Compare with this model instead of the declared base ('root': the root of its lineage)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: reports/<model name>)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Tokens generated per prompt (greedy)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Prompts per batch (default: chosen from the device)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Run a stratified sample of N suite items."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and generation."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
    judge: Optional[str] = typer.Option(None, "--judge",
                                        help="Refusal judge: labels each reply refused or answered (default: "
                                             "the validated CPU default; see `compliance judges`)."),
    judge_option: Optional[list[str]] = typer.Option(None, "--judge-option",
                                                     help="Refusal judge construction option KEY=VALUE, repeatable: e.g. "
                                                          "model=ProtectAI/distilroberta-base-rejection-v1 and "
                                                          "labels=REJECTION=refusal,NORMAL=compliance."),
    harm_judge: Optional[str] = typer.Option(None, "--harm-judge",
                                             help="Harm judge: labels each reply to a harmful prompt harmful when it "
                                                  "carries out the request (default: the validated CPU default; "
                                                  "guard, harmbench-cls or hf-classifier on a GPU; 'none': refusal only)."),
    harm_judge_option: Optional[list[str]] = typer.Option(None, "--harm-judge-option",
                                                          help="Harm judge construction option KEY=VALUE, repeatable "
                                                               "(e.g. model=meta-llama/Llama-Guard-3-1B)."),
    no_sensitivity: bool = typer.Option(False, "--no-sensitivity",
                                        help="Do not label replies with the other CPU judges (the report then cannot "
                                             "say whether its verdict survives a change of judge)."),
    no_pdf: bool = typer.Option(False, "--no-pdf", help="Write report.json only."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow pickle weights (.bin/.pt): they can run code."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                           help="Let a Hub model run its own Python code (off by default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    suite: Optional[list[str]] = typer.Option(None, "--suite", "-s",
                                              help="Suite or benchmark to run instead of the policy's (general, medical, "
                                                   "legal, finance, xstest...); repeat or comma-separate. See `compliance suites list`."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir",
                                            help="Offline: folder laid out like ../shared/benchmarks/ (default $COMPLIANCE_DATA_DIR, "
                                                 "else download from the pinned sources)."),
    accept_licence: Optional[list[str]] = typer.Option(None, "--accept-licence",
                                                       help="Run this opt-in benchmark whose licence is unconfirmed (e.g. trident-law); repeatable."),
    keys: Optional[Path] = typer.Option(None, "--keys",
                                        help="Sign the report with this key folder (default: $COMPLIANCE_SIGNING_KEYS; unsigned when unset)."),
    tsa: Optional[str] = typer.Option(None, "--tsa", help=TSA_HELP),
    store: Optional[Path] = typer.Option(None, "--store",
                                         help="Response store file: reuse stored responses, resume a killed run "
                                              "(default: $COMPLIANCE_STORE, else ~/.cache/compliance/responses.sqlite3)."),
    no_store: bool = typer.Option(False, "--no-store", help="Generate every response afresh and store nothing."),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="Text that ends an answer where it appears "
                                                                  "(not kept); repeatable."),
    backend: str = typer.Option("transformers", "--backend",
                                help="Who generates: transformers (both models run here), openai (an OpenAI-compatible "
                                     "server: vLLM serve, TGI, llama.cpp; needs --base-url) or vllm (vLLM in this "
                                     "process; pip install 'compliance\\[vllm]')."),
    base_url: Optional[str] = typer.Option(None, "--base-url",
                                           help="--backend openai: the server's base URL, e.g. http://localhost:8000/v1."),
    served_model: Optional[str] = typer.Option(None, "--model",
                                               help="--backend openai: the name the server serves MODEL under "
                                                    "(default: MODEL's id, as `vllm serve MODEL` names it)."),
    served_base_model: Optional[str] = typer.Option(None, "--base-model",
                                                    help="--backend openai: the name the server serves the base "
                                                         "under (default: the base's id)."),
    base_model_url: Optional[str] = typer.Option(None, "--base-model-url",
                                                 help="--backend openai: the base URL of the server that serves the "
                                                      "base, when another server than --base-url does."),
    concurrency: int = typer.Option(8, "--concurrency", help="--backend openai: requests in flight at once."),
    api_key_env: str = typer.Option(ENV_OPENAI_API_KEY, "--api-key-env",
                                    help="--backend openai: environment variable holding the server's API key "
                                         "(sent as a bearer token when set; never recorded)."),
) -> None:
    """Evaluate MODEL and its base on the policy's suite; write report.json and report.pdf.

    The base is read from MODEL's card (base_model in README.md front matter) or adapter_config.json, unless --base is given. Both models answer the same prompts with greedy decoding; a rule-based judge labels each answer refusal or compliance; paired statistics measure the change; each policy rule gives pass, fail, or inconclusive when the 95% interval straddles its threshold.

    Example: compliance report ./my-medical-finetune --policy healthcare

    Public benchmarks: compliance report ./ft --suite medical --limit 200 --data-dir ../shared/benchmarks

    A server generates (lineage still comes from MODEL): compliance report ./ft --backend openai --base-url http://localhost:8000/v1 --model ft --base-model base
    """
    from compliance import api

    request = report_request(
        model, policy=policy, base=base, out_dir=out_dir, max_new_tokens=max_new_tokens, batch_size=batch_size,
        limit=limit, seed=seed, device=device, judge=judge, judge_option=judge_option, harm_judge=harm_judge,
        harm_judge_option=harm_judge_option, no_sensitivity=no_sensitivity, no_pdf=no_pdf, allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code, quiet=quiet, suite=suite, data_dir=data_dir,
        accept_licence=accept_licence, keys=keys, tsa=tsa, store=store, no_store=no_store, stop=stop, backend=backend,
        base_url=base_url, served_model=served_model, served_base_model=served_base_model,
        base_model_url=base_model_url, concurrency=concurrency, api_key_env=api_key_env)
    result = api.run_report(request)
    _print_summary(result.report)
    out.print(f"JSON: {result.json_path}")
    if result.pdf_path:
        out.print(f"PDF:  {result.pdf_path}")


def report_request(model: str, *, policy: str, base: Optional[str], out_dir: Optional[Path], max_new_tokens: int,
                   batch_size: Optional[int], limit: Optional[int], seed: int, device: Optional[str],
                   judge: Optional[str], judge_option: Optional[list[str]], harm_judge: Optional[str],
                   harm_judge_option: Optional[list[str]], no_sensitivity: bool, no_pdf: bool, allow_pickle: bool,
                   trust_remote_code: bool, quiet: bool, suite: Optional[list[str]], data_dir: Optional[Path],
                   accept_licence: Optional[list[str]], keys: Optional[Path], tsa: Optional[str],
                   store: Optional[Path], no_store: bool,
                   stop: Optional[list[str]], backend: str, base_url: Optional[str], served_model: Optional[str],
                   served_base_model: Optional[str], base_model_url: Optional[str], concurrency: int,
                   api_key_env: str):
    """The :class:`~compliance.request.ReportRequest` that ``compliance report``'s options describe."""
    from compliance.request import (BackendSpec, GenerationSpec, JudgeSpec, ModelSpec, OutputSpec, ReportRequest,
                                    SuiteSpec)

    judges = JudgeSpec(sensitivity=not no_sensitivity)
    if judge:
        judges = replace(judges, refusal=judge)
    if harm_judge:
        judges = replace(judges, harm=None if harm_judge.lower() == "none" else harm_judge)
    judges = replace(judges, refusal_options=_judge_options(judge_option),
                     harm_options=_judge_options(harm_judge_option, "--harm-judge-option"))
    return ReportRequest(
        models=ModelSpec(model, base=base, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code),
        policy=policy,
        suite=SuiteSpec(names=tuple(_split(suite) or ()) or None, limit=limit, data_dir=data_dir,
                        accept_licence=tuple(_split(accept_licence) or ())),
        generation=GenerationSpec(max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, device=device,
                                  stop=tuple(stop or ())),
        judges=judges,
        backend=BackendSpec(name=backend, base_url=base_url, served_model=served_model,
                            served_base_model=served_base_model, base_model_url=base_model_url,
                            concurrency=concurrency, api_key_env=api_key_env),
        output=OutputSpec(out_dir=out_dir, pdf=not no_pdf, keys=keys, tsa=tsa, progress=not quiet),
        store=False if no_store else store)


@app.command()
def adapt(
    base: str = typer.Argument(..., help=f"Model to start from: a local folder or '{BUILTIN_MODEL_ID}'."),
    data: Path = typer.Option(..., "--data", help="JSONL with {prompt, response} or {messages} per line."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the fine-tuned model to."),
    steps: int = typer.Option(30, "--steps", help="Optimizer steps."),
    lr: float = typer.Option(2e-5, "--lr", help="AdamW learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed for data order and initialisation."),
    max_length: int = typer.Option(256, "--max-length", help="Truncate examples to this many tokens."),
    batch_size: int = typer.Option(4, "--batch-size", help="Examples per step."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Fully fine-tune BASE on --data and save it with a card that records its lineage.

    The card's front matter names base_model, base_model_relation: finetune, the training data's sha256 and every hyperparameter, so `compliance report` finds the base by itself.

    Example: compliance adapt HuggingFaceTB/SmolLM2-135M-Instruct --data qa.jsonl --out ft/
    """
    from compliance import api

    result = api.adapt(base, data, out_dir, steps=steps, lr=lr, seed=seed, max_length=max_length,
                       batch_size=batch_size, device=device, overwrite=overwrite, progress=not quiet)
    out.print(f"Fine-tuned {len(result.losses)} steps in {result.seconds:.0f} s "
              f"(loss {result.losses[0]:.3f} → {result.losses[-1]:.3f}); saved to {result.out_dir}")


@app.command()
def lineage(
    model: str = typer.Argument(..., help="A Hub id (org/name[@revision]), a local model folder, or the built-in model's id."),
    base: Optional[str] = typer.Option(None, "--base", help="'root' for the root of the lineage, or a model to compare with instead of the declared base."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (chain from the model to the root, parents of a merge, base) instead of a tree."),
) -> None:
    """Show what MODEL was derived from, back to the root, and which base a report would compare it with.

    Reads the card's base_model and base_model_relation, the Hub's baseModels, adapter_config.json and, as a low-confidence hint, config.json's _name_or_path. Every model is pinned to its commit sha (Hub) or content digest (folder). Ancestors need no weights (each says whether it has them), and a gated ancestor is followed through the Hub's metadata when its files are refused.

    Example: compliance lineage org/my-finetune@main --json
    """
    from compliance.lineage import describe_lineage

    info = describe_lineage(model, base)
    if as_json:
        out.print_json(json.dumps(info))
        return
    out.print(_lineage_tree(info))
    if info["base"] is None:
        out.print(f"[yellow]No comparison base:[/] {plain(info.get('base_error'))}")
    else:
        out.print(f"Comparison base: [bold]{plain(info['base'])}[/] [dim]{plain(info['base_revision'][:12])}[/] "
                  f"({plain(info['base_selection'])})")
        base_node = next((n for n in info["chain"] if n["id"] == info["base"]), None)
        if base_node is not None and base_node.get("has_weights") is False:
            out.print("[yellow]The comparison base has no weight files:[/] a report needs --base with a model that has them")


def _lineage_tree(info: dict) -> Tree:
    def label(node: dict) -> str:
        # Ids, licences and file names come from cards and servers: printed as text, never as markup.
        mark = "  [green]← comparison base[/]" if node["id"] == info.get("base") else ""
        gated = f" [yellow]gated: {plain(node['gated'])}[/]" if node.get("gated") else ""
        refused = f" [yellow](no access to {plain(', '.join(node['unreadable']))})[/]" if node.get("unreadable") else ""
        licence = f" [dim]licence {plain(node['license'])}[/]" if node.get("license") else ""
        weightless = " [magenta]metadata only, no weights[/]" if node.get("has_weights") is False else ""
        return (f"[bold]{plain(node['id'])}[/] [dim]{plain(node['revision'][:12])}[/]"
                f"{licence}{gated}{refused}{weightless}{mark}")

    def edge(node: dict) -> str:
        confidence = {"low": "[red]low confidence[/]", "medium": "[yellow]medium confidence[/]"}.get(node["confidence"], "")
        return f"[cyan]{plain(node['relation'])}[/] of  [dim]({plain(node['source'])}{', ' if confidence else ''}{confidence})[/]"

    chain = info["chain"]
    tree = Tree(label(chain[0]))
    branch = tree
    for node, parent in zip(chain, chain[1:] + [None]):
        if node["relation"] is None:
            break
        sub = branch.add(edge(node))
        if node["parents"]:
            for p in info.get("parents", []):
                sub.add(f"[bold]{plain(p['id'])}[/] [dim]{plain(p['revision'][:12])}[/]")
        if parent is None:
            break
        branch = sub.add(label(parent))
    return tree


@app.command()
def policies() -> None:
    """List the shipped policies and their rules."""
    from compliance.policy import available_policies, load_policy

    table = Table("policy", "title", "rules", "default suite", "full suite (--suite)")
    for name in available_policies():
        p = load_policy(name)
        table.add_row(name, p.data["title"], str(len(p.data["rules"])), ", ".join(p.data["suite"]),
                      p.data.get("full_suite", "-"))
    out.print(table)


def _print_summary(report: dict) -> None:
    verdict = report["summary"]["verdict"]
    out.print(f"[{_VERDICT_STYLE[verdict]}]Verdict: {verdict.upper()}[/]  "
              f"({plain(report['policy']['title'])}, policy '{plain(report['policy']['name'])}')")
    out.print(plain(report["summary"]["headline"]))
    table = Table("rule", "observed (95% CI)", "limit", "verdict")
    for r in report["policy"]["rules"]:
        pct = (lambda x: "n/a" if x is None else f"{100 * x:+.1f}" if r["kind"] == "drift" else f"{100 * x:.1f}%")
        limit = {"max": "≤ ", "min": "≥ "}[r["bound"]] + pct(r["threshold"])
        table.add_row(plain(r["rule_id"]), f"{pct(r['observed'])} ({pct(r['ci_low'])} … {pct(r['ci_high'])})",
                      limit, f"[{_VERDICT_STYLE[r['verdict']]}]{r['verdict']}[/]")
    out.print(table)
    if report["summary"].get("judge_sensitivity"):
        out.print(f"Judge sensitivity: {plain(report['summary']['judge_sensitivity'])}")


def _judge_options(values: Optional[list[str]], option: str = "--judge-option") -> dict[str, str]:
    from compliance.judges import parse_judge_options

    return parse_judge_options(values, option)


def _split(values: Optional[list[str]]) -> Optional[list[str]]:
    """Repeated and comma-separated option values as one list (None when none were given)."""
    names = [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
    return names or None
