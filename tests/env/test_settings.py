import pytest

from support import REPO
from tandem.env.settings import default_root, load_project, parse_settings
from tandem.errors import UsageError

VALID = load_project(REPO).settings.as_dict()


def test_repository_settings_load():
    s = load_project(REPO).settings
    assert s.python == "3.11"
    assert s.base_image == "python:3.11-slim-bookworm"
    assert {"PYTHONUNBUFFERED", "HF_XET_HIGH_PERFORMANCE", "PYTORCH_CUDA_ALLOC_CONF"} <= set(s.env)


def test_digest_pins_the_base_image():
    block = {**VALID, "base_image_digest": "sha256:" + "a" * 64}
    assert parse_settings(block).base_ref == "python:3.11-slim-bookworm@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"python": "3"}, "python must be"),
        ({"uv_version": "latest"}, "uv_version must be"),
        ({"base_image": "python:3.12-slim-bookworm"}, "is Python 3.12 but python is '3.11'"),
        ({"base_image_digest": "abc"}, "base_image_digest must be"),
        ({"workdir": "app"}, "workdir must be an absolute path"),
        ({"apt_packages": ["gcc; rm -rf /"]}, "apt_packages must be Debian package names"),
        ({"apt_packages": "gcc"}, "apt_packages must be a list"),
        ({"env": {"HF_TOKEN": "x"}}, "env.HF_TOKEN looks like a secret"),
        ({"env": {"DB_PASSWORD": "x"}}, "env.DB_PASSWORD looks like a secret"),
        ({"env": {"WANDB_API_KEY": "x"}}, "env.WANDB_API_KEY looks like a secret"),
        ({"env": {"MY_SECRET_THING": "x"}}, "looks like a secret"),
        ({"env": {"WORKERS": 4}}, 'quote it: WORKERS = "4"'),
        ({"modal_cpu": 0}, "modal_cpu must be a positive number of CPU cores"),
        ({"modal_cpu": "4"}, "modal_cpu must be a number"),
        ({"modal_memory": 16.5}, "modal_memory must be a int"),
        ({"threads": 0}, "threads must be a positive number of threads"),
        ({"threads": True}, "threads must be a int"),
        ({"threads": 8}, "threads 8 is above modal_cpu 4.0"),
        ({"env": {"OMP_NUM_THREADS": "2"}}, "env.OMP_NUM_THREADS is set from threads; remove it and set threads = N"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(change, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("[", r"\[")) as err:
        parse_settings({**VALID, **change})
    assert "\n" not in str(err.value)


def test_secret_message_points_to_secret_stores():
    with pytest.raises(UsageError) as err:
        parse_settings({**VALID, "env": {"HF_TOKEN": "x"}})
    assert "Modal Secret" in str(err.value) and "Compose secret" in str(err.value)


def test_missing_key_is_named():
    block = dict(VALID)
    del block["uv_version"]
    with pytest.raises(UsageError, match="missing key 'uv_version'"):
        parse_settings(block)


def test_missing_settings_file_and_table(tmp_path, project_dir):
    with pytest.raises(UsageError, match="pyproject.toml not found"):
        load_project(tmp_path / "nowhere")
    pyproject = project_dir / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[tool.tandem.image", "[tool.other.image"))
    with pytest.raises(UsageError, match=r"has no \[tool.tandem.image\] table"):
        load_project(project_dir)


@pytest.fixture
def no_project_env(monkeypatch):
    monkeypatch.delenv("TANDEM_PROJECT_DIR", raising=False)


def test_the_project_is_found_from_a_subdirectory(project_dir, monkeypatch, no_project_env):
    deep = project_dir / "src" / "tandem"
    monkeypatch.chdir(deep)
    assert load_project().root == project_dir.resolve()


def test_a_pyproject_without_the_table_is_passed_over(project_dir, monkeypatch, no_project_env):
    nested = project_dir / "vendor" / "other"
    nested.mkdir(parents=True)
    (nested / "pyproject.toml").write_text('[project]\nname = "other"\n')
    monkeypatch.chdir(nested)
    assert default_root() == project_dir.resolve()


def test_outside_any_project_one_line_says_how_to_fix(tmp_path, monkeypatch, no_project_env):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        load_project()
    message = str(err.value)
    assert message.startswith(f"no tandem project in {tmp_path.resolve()} or above")
    assert message.endswith("cd into the project or pass --project DIR") and "\n" not in message


def test_tandem_project_dir_wins_over_the_current_directory(project_dir, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(project_dir)
    monkeypatch.setenv("TANDEM_PROJECT_DIR", str(other))
    with pytest.raises(UsageError, match=f"TANDEM_PROJECT_DIR={other} holds no pyproject.toml"):
        default_root()
    monkeypatch.setenv("TANDEM_PROJECT_DIR", str(REPO))
    assert load_project().root == REPO


CREDENTIAL_NAMES = [
    *("DB_PASSWD", "GITHUB_PAT", "AWS_ACCESS_KEY_ID", "CREDENTIALS", "API_KEY_FILE", "HF_TOKEN", "GH_TOKEN"),
    *("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "WANDB_API_KEY", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY"),
    *("GOOGLE_APPLICATION_CREDENTIALS", "PGPASSWORD", "MYSQL_PWD", "DB_PASS", "NPM_AUTH_TOKEN", "SSH_PRIVATE_KEY"),
    *("APIKEY", "STRIPE_APIKEY", "SECRET", "DJANGO_SECRET_KEY", "AZURE_CLIENT_SECRET", "GPG_PASSPHRASE"),
    *("ACCESS_TOKEN", "REFRESH_TOKEN", "GITLAB_ACCESSTOKEN", "DOCKER_AUTH_CONFIG", "SESSION_COOKIE", "CREDS"),
    *("PRIVATE_KEY_PATH", "JWT_SIGNING", "MY_KEYS", "db_password", "Api_Key"),
]  # fmt: skip
NORMAL_NAMES = [
    *("PATH", "HOME", "PWD", "PYTHONUNBUFFERED", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "HF_HOME"),
    *("HF_XET_HIGH_PERFORMANCE", "PYTORCH_CUDA_ALLOC_CONF", "CUBLAS_WORKSPACE_CONFIG", "OMP_PROC_BIND"),
    *("TOKENIZERS_PARALLELISM", "MKL_DYNAMIC", "TORCH_HOME", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"),
    *("UV_LINK_MODE", "UV_COMPILE_BYTECODE", "KEYBOARD_LAYOUT", "MONKEY_PATCH", "PATCH_SIZE", "PASSTHROUGH"),
    *("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "TANDEM_DATA_DIR", "TANDEM_RUNS_DIR", "DEBIAN_FRONTEND", "TZ"),
]  # fmt: skip


@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
def test_credential_names_are_refused(name):
    with pytest.raises(UsageError, match=f"env.{name} looks like a secret"):
        parse_settings({**VALID, "env": {name: "x"}})


@pytest.mark.parametrize("name", NORMAL_NAMES)
def test_normal_names_pass(name):
    assert parse_settings({**VALID, "env": {name: "x"}}).env == {name: "x"}


def test_threads_reach_every_target_through_the_runtime_env():
    s = parse_settings({**VALID, "threads": 2})
    assert {
        k: s.runtime_env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    } == dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "2")
    assert "OMP_NUM_THREADS" not in s.env  # the block itself stays as written
    assert (s.modal_cpu, s.modal_memory) == (4.0, 16384)


def test_the_reservation_keys_are_optional():
    block = {k: v for k, v in VALID.items() if k not in ("modal_cpu", "modal_memory", "threads")}
    s = parse_settings(block)
    assert (s.modal_cpu, s.modal_memory, s.threads) == (4.0, 16384, 4)


# Each way a value could break out of the line or word it is written into, in some generated file.
INJECTIONS = {
    "newline": "\nRUN echo pwned",
    "carriage return": "\rRUN echo pwned",
    "NUL": "\x00",
    "unicode line separator": "\u2028RUN echo pwned",
    "tab": "\tx",
    "double quote": '"',
    "single quote": "'",
    "backslash line continuation": " \\",
    "backslash": "\\x",
    "dollar expansion": "$HOME",
    "brace expansion": "${HOME}",
    "command substitution": "$(id)",
    "backtick": "`id`",
    "semicolon": "; echo pwned",
    "and": "&& echo pwned",
    "pipe": "| sh",
    "redirect": "> /etc/passwd",
    "glob": "*",
    "space": " x",
    "comment": " # x",
    "non-ascii": "é",
}
TEXT_FIELDS = [
    "python",
    "base_image",
    "base_image_digest",
    "uv_version",
    "workdir",
    "data_dir",
    "runs_dir",
    "modal_gpu",
    "modal_builder_version",
]


@pytest.mark.parametrize("shape", INJECTIONS, ids=list(INJECTIONS))
@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_an_injection_in_a_text_setting_is_refused_in_one_line_naming_it(field, shape):
    value = VALID[field] + INJECTIONS[shape]
    with pytest.raises(UsageError) as err:
        parse_settings({**VALID, field: value})
    assert str(err.value).startswith(f"[tool.tandem.image]: {field} must be ")
    assert str(err.value).endswith(f"; got {value!r}") and "\n" not in str(err.value)


@pytest.mark.parametrize("shape", INJECTIONS, ids=list(INJECTIONS))
@pytest.mark.parametrize("field, entry", [("apt_packages", "gcc"), ("modal_secrets", "wandb")])
def test_an_injection_in_a_list_entry_is_refused_naming_the_entry(field, entry, shape):
    value = entry + INJECTIONS[shape]
    with pytest.raises(UsageError) as err:
        parse_settings({**VALID, field: [entry, value]})
    assert str(err.value).startswith(f"[tool.tandem.image]: {field} must be ")
    assert str(err.value).endswith(f"; got {value!r}") and "\n" not in str(err.value)


@pytest.mark.parametrize("shape", INJECTIONS, ids=list(INJECTIONS))
def test_an_injection_in_an_env_key_is_refused_in_one_line(shape):
    key = "PYTHONUNBUFFERED" + INJECTIONS[shape]
    with pytest.raises(UsageError) as err:
        parse_settings({**VALID, "env": {key: "1"}})
    assert str(err.value) == (f"[tool.tandem.image]: env key {key!r} must be a variable name (letters, digits, '_')")


# In an env value, quotes, `$` and shell words are literal on every target (tests/env/test_parity.py
# proves it); what a format reads as syntax with no escape that every reader honours is refused.
ENV_VALUE_REFUSED = [
    *("newline", "carriage return", "NUL", "unicode line separator", "tab", "backslash line continuation"),
    *("backslash", "brace expansion", "non-ascii"),
]  # fmt: skip


@pytest.mark.parametrize("shape", ENV_VALUE_REFUSED)
def test_an_env_value_a_format_cannot_carry_is_refused_in_one_line(shape):
    value = "1" + INJECTIONS[shape]
    with pytest.raises(UsageError) as err:
        parse_settings({**VALID, "env": {"PYTHONUNBUFFERED": value}})
    assert str(err.value) == (
        "[tool.tandem.image]: env.PYTHONUNBUFFERED must be one line of printable ASCII with no backslash or "
        f"brace and no space at either end; got {value!r}"
    )


@pytest.mark.parametrize("value", [" 1", "1 ", "1\t"])
def test_an_env_value_with_space_at_an_end_is_refused(value):
    with pytest.raises(UsageError, match="no space at either end"):
        parse_settings({**VALID, "env": {"PYTHONUNBUFFERED": value}})


@pytest.mark.parametrize("shape", sorted(set(INJECTIONS) - set(ENV_VALUE_REFUSED)))
def test_other_env_values_are_taken_as_written(shape):
    value = "1" + INJECTIONS[shape]
    assert parse_settings({**VALID, "env": {"PYTHONUNBUFFERED": value}}).env["PYTHONUNBUFFERED"] == value


@pytest.mark.parametrize("cpu", [float("inf"), float("nan")])
def test_modal_cpu_is_a_finite_number(cpu):
    with pytest.raises(UsageError, match="modal_cpu must be a positive number of CPU cores"):
        parse_settings({**VALID, "modal_cpu": cpu})


@pytest.mark.parametrize("path", ["/", "/app/", "//app", "/app/../etc", "/app/./x", "/a:b", "/.hidden"])
def test_a_path_setting_is_a_plain_absolute_path(path):
    with pytest.raises(UsageError, match="workdir must be an absolute path inside the image"):
        parse_settings({**VALID, "workdir": path})
