"""POST and GET /api/sessions/: start an interview with questions from the bank."""

import json

import pytest

from sessions_app.models import InterviewSession
from sessions_app.services import QUESTION_BANK, session_create

pytestmark = pytest.mark.django_db

BANK_SIZE = len(json.loads(QUESTION_BANK.read_text()))


def start(api_client, **fields):
    return api_client.post("/api/sessions/", fields, format="json")


def test_create_session_returns_the_requested_number_of_distinct_questions(
    api_client, user, questions
):
    response = start(api_client, role="backend developer", language="en", question_count=4)

    assert response.status_code == 201
    body = response.json()
    assert body["role"] == "backend developer"
    assert body["language"] == "en"
    assert body["status"] == "in_progress"
    assert body["final_score"] is None
    assert len(body["questions"]) == 4
    assert len({question["id"] for question in body["questions"]}) == 4
    for question in body["questions"]:
        assert set(question) == {"id", "text", "category"}
        assert question["text"]
        assert question["category"]
    assert InterviewSession.objects.get(pk=body["id"]).user == user


def test_create_session_asks_five_questions_by_default(api_client, questions):
    response = start(api_client)

    assert response.status_code == 201
    assert len({question["id"] for question in response.json()["questions"]}) == 5


def test_create_session_can_ask_every_question_in_the_bank(api_client, questions):
    response = start(api_client, question_count=BANK_SIZE)

    assert response.status_code == 201
    assert len({question["id"] for question in response.json()["questions"]}) == BANK_SIZE


@pytest.mark.parametrize("question_count", [0, -1, BANK_SIZE + 1, "five"])
def test_create_session_refuses_a_question_count_outside_the_bank(
    api_client, questions, question_count
):
    response = start(api_client, question_count=question_count)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["question_count"]
    assert not InterviewSession.objects.exists()


@pytest.mark.parametrize("language", ["english!", "english", "e"])
def test_create_session_refuses_a_language_that_is_not_a_language_code(
    api_client, questions, language
):
    response = start(api_client, language=language)

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["language"]
    assert not InterviewSession.objects.exists()


def test_create_session_without_a_language_leaves_it_to_detection(api_client, questions):
    response = start(api_client, language="")

    assert response.status_code == 201
    assert response.json()["language"] == ""


@pytest.mark.parametrize(
    ("role", "category"),
    [
        ("python developer", "python"),
        ("Senior Web Developer", "web"),
        ("system-design interviewer", "system-design"),
    ],
)
def test_create_session_puts_the_questions_of_the_category_the_role_names_first(
    api_client, questions, role, category
):
    response = start(api_client, role=role, question_count=6)

    categories = [question["category"] for question in response.json()["questions"]]
    assert categories[:3] == [category] * 3
    assert category not in categories[3:]


def test_session_list_returns_only_own_sessions_newest_first(
    api_client, user, other_user, questions
):
    first = start(api_client, question_count=1).json()
    session_create(user=other_user, question_count=1)
    second = start(api_client, question_count=2).json()

    response = api_client.get("/api/sessions/")

    assert response.status_code == 200
    assert response.json()["results"] == [second, first]
    assert response.json()["count"] == 2


def test_session_list_is_paginated_with_a_next_link(api_client, user, questions):
    sessions = [session_create(user=user, question_count=1) for _ in range(3)]

    first_page = api_client.get("/api/sessions/?limit=2").json()
    second_page = api_client.get(first_page["next"]).json()

    assert first_page["count"] == 3
    assert [s["id"] for s in first_page["results"]] == [sessions[2].pk, sessions[1].pk]
    assert [s["id"] for s in second_page["results"]] == [sessions[0].pk]
    assert second_page["next"] is None
