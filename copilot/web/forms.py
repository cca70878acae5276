"""The portal's forms: a new job of each kind, answers to clarifying questions, job filters.

:class:`NewJobForm` adapts the job-request schemas of :mod:`copilot.jobs.job_requests` (the
same rules the JSON API and ``submit_job`` use): it only reads what a person typed or uploaded
(the text; the agent's JSON, pasted or as a file), lets the schema judge the payload, and shows
each of the schema's field errors beside the form field it came from.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.validators import ProhibitNullCharactersValidator
from django.template.defaultfilters import filesizeformat

from copilot.jobs.exceptions import InvalidJobRequest
from copilot.jobs.job_requests import (
    AGENT_FIELD,
    MAX_AGENT_BYTES,
    MAX_TEXT_CHARS,
    TEXT_FIELD,
    job_request_clean,
)
from copilot.jobs.json_limits import JSON_TOO_DEEP, json_too_deep
from copilot.jobs.models import GenerationJob

Kind = GenerationJob.Kind

#: The largest agent file or pasted text read at all (bytes). The rule is the schema's
#: MAX_AGENT_BYTES, of the agent as compact JSON; this only keeps a huge upload out of memory,
#: with room for indentation.
MAX_AGENT_JSON_BYTES = 4 * MAX_AGENT_BYTES
#: The longest answer to one clarifying question (characters).
MAX_ANSWER_CHARS = 2_000

#: Per kind: the label and help of its text field.
TEXT_LABELS: dict[str, tuple[str, str]] = {
    Kind.DECOMPOSE: (
        "Goal",
        "Describe in your own words what the agent should do; the copilot breaks it into steps.",
    ),
    Kind.GENERATE: ("Instructions", "The steps the agent should follow, one per line."),
    Kind.UPDATE: ("Change request", "What should change in the agent below."),
    Kind.CUSTOMIZE: ("Change request", "How the template below should be adapted."),
}


class SchemaTextField(forms.CharField):
    """Text whose every rule is the job-request schema's, NUL characters too (a CharField's
    own check would answer them in other words than the API and ``submit_job``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class NewJobForm(forms.Form):
    """One job of ``kind``: its text, and for update and customize an agent, pasted or uploaded.

    ``payload()`` is the protocol's body for the kind, ready for ``job_submit``.
    """

    # Not required and no max_length here: the schema's rules (and messages) decide; the
    # browser is told both through the widget's attributes.
    text = SchemaTextField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "required": True, "maxlength": MAX_TEXT_CHARS}),
    )
    agent_json = forms.CharField(
        label="Agent JSON",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        help_text="Paste the agent's JSON here, or upload it as a file below.",
    )
    agent_file = forms.FileField(
        label="…or upload a file",
        required=False,
        help_text=f"A .json file of at most {filesizeformat(MAX_AGENT_JSON_BYTES)}.",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json"}),
    )
    notify_email = forms.BooleanField(label="Email me when it's done", required=False)

    def __init__(self, *args: Any, kind: str, email: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = Kind(kind)
        # Checked by default for a user with an email address; one without cannot ask.
        notify = self.fields["notify_email"]
        notify.initial = bool(email)
        notify.disabled = not email
        notify.help_text = (
            f"One email to {email} each time the job ends (not when you stop it)."
            if email
            else "Your account has no email address, so the portal cannot write to you."
        )
        label, help_text = TEXT_LABELS[self.kind]
        self.fields["text"].label = label
        self.fields["text"].help_text = help_text
        if self.kind not in AGENT_FIELD:
            del self.fields["agent_json"]
            del self.fields["agent_file"]
        self._agent_source = "agent_json"
        self._agent_given: set[str] = set()  # the agent fields that held something (even null)
        self.request_payload: dict[str, Any] | None = None

    def clean_agent_file(self) -> Any:
        upload = self.cleaned_data.get("agent_file")
        if not upload:
            return None
        if upload.size > MAX_AGENT_JSON_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; the largest read is "
                f"{MAX_AGENT_JSON_BYTES:,} bytes."
            )
        self._agent_given.add("agent_file")
        return _agent_from_json(upload.read(), what="The file")

    def clean_agent_json(self) -> Any:
        text = self.cleaned_data.get("agent_json") or ""
        if not text.strip():
            return None
        if (size := len(text.encode())) > MAX_AGENT_JSON_BYTES:
            raise forms.ValidationError(
                f"The pasted JSON is {size:,} bytes; the largest read is "
                f"{MAX_AGENT_JSON_BYTES:,} bytes."
            )
        self._agent_given.add("agent_json")
        return _agent_from_json(text, what="The pasted text")

    def clean(self) -> dict[str, Any]:
        super().clean()  # Form.clean() returns cleaned_data (the stubs allow None)
        data = self.cleaned_data
        agent_read = "agent_json" not in self.errors and "agent_file" not in self.errors
        if self.kind in AGENT_FIELD and agent_read:
            if self._agent_given == {"agent_json", "agent_file"}:
                self.add_error("agent_json", "Paste the agent JSON or upload a file, not both.")
            elif self._agent_given == {"agent_file"}:
                self._agent_source = "agent_file"
        self._judge(data)
        return data

    def _judge(self, data: dict[str, Any]) -> None:
        """Let the schema judge what was read; its errors go beside the fields they name
        (a field that could not be read, or was read twice, already says why)."""
        payload: dict[str, Any] = {TEXT_FIELD[self.kind]: data.get("text") or ""}
        if self.kind in AGENT_FIELD and self._agent_source in self._agent_given:
            payload[AGENT_FIELD[self.kind]] = data.get(self._agent_source)
        try:
            self.request_payload = job_request_clean(kind=self.kind, payload=payload)
        except InvalidJobRequest as exc:
            self.request_payload = None
            agent_unread = bool({"agent_json", "agent_file"} & set(self.errors))
            fields = {TEXT_FIELD[self.kind]: "text", AGENT_FIELD.get(self.kind): self._agent_source}
            for field, message in exc.errors.items():
                name = fields.get(field)
                if name == "text" and "text" in self.errors:
                    continue
                if name == self._agent_source and agent_unread:
                    continue
                self.add_error(name, message)

    def payload(self) -> dict[str, Any]:
        """The protocol's fields for this kind, as the schema cleaned them (after is_valid())."""
        if self.request_payload is None:
            raise ValueError("payload() of a form that is not valid")
        return self.request_payload


def _agent_from_json(raw: str | bytes, *, what: str) -> Any:
    """The JSON value in ``raw``: reading it is the form's part; whether it is an agent is the
    schema's (so a list gets the same answer here as from the API)."""
    if json_too_deep(raw):
        raise forms.ValidationError(f"{what} is too deeply nested: {JSON_TOO_DEEP}")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise forms.ValidationError(f"{what} is not UTF-8 text, so it cannot be JSON.") from None
    except ValueError as exc:
        raise forms.ValidationError(f"{what} is not valid JSON: {exc}.") from None


class AnswerForm(forms.Form):
    """Answers to a job's clarifying questions: one optional field per question, at least one.

    Labels and examples are upstream text: templates render them escaped, never as help_text.
    """

    def __init__(self, *args: Any, questions: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.questions = [q for q in questions if isinstance(q, dict)]
        for index, question in enumerate(self.questions):
            self.fields[f"answer_{index}"] = forms.CharField(
                label=str(question.get("question") or f"Question {index + 1}"),
                required=False,
                max_length=MAX_ANSWER_CHARS,
                widget=forms.Textarea(attrs={"rows": 2}),
            )

    def clean(self) -> dict[str, Any]:
        super().clean()  # Form.clean() returns cleaned_data (the stubs allow None)
        data = self.cleaned_data
        if not self.errors and not any(data.get(name) for name in self.fields):
            raise forms.ValidationError("Answer at least one question.")
        return data

    def rows(self) -> list[tuple[dict[str, Any], forms.BoundField]]:
        """Each question beside its bound field, for the template."""
        return [(q, self[f"answer_{i}"]) for i, q in enumerate(self.questions)]

    def answers_text(self) -> str:
        """The answers as text to append to the original request (after ``is_valid()``)."""
        lines = ["Answers to the clarifying questions:"]
        for index, question in enumerate(self.questions):
            answer = self.cleaned_data.get(f"answer_{index}")
            if answer:
                asked = question.get("question") or f"Question {index + 1}"
                keyword = f" ({question['keyword']})" if question.get("keyword") else ""
                lines.append(f"- {asked}{keyword}: {answer}")
        return "\n".join(lines)

    def follow_up_payload(self, *, job: GenerationJob) -> dict[str, Any]:
        """The request of a follow-up job: ``job``'s request, its text plus the answers."""
        payload = dict(job.request)
        field = TEXT_FIELD[Kind(job.kind)]
        original = payload.get(field)
        if isinstance(original, dict):  # generate: {"goal": text, ...}
            goal = str(original.get("goal") or "")
            payload[field] = f"{goal}\n\n{self.answers_text()}".strip()
        else:
            payload[field] = f"{original or ''}\n\n{self.answers_text()}".strip()
        return payload


class JobFilterForm(forms.Form):
    """The staff's filters of the job list (GET parameters); every one optional."""

    status = forms.ChoiceField(
        choices=[("", "any status"), *GenerationJob.Status.choices], required=False
    )
    kind = forms.ChoiceField(choices=[("", "any kind"), *Kind.choices], required=False)
    owner = forms.CharField(required=False, max_length=150, label="Owner (username)")
