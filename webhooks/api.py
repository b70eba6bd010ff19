"""Register, list and remove webhook endpoints: thin views over the services."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.api import ID_RANGE, SessionPagination, errors

from . import services
from .models import Endpoint
from .serializers import EndpointCreatedSerializer, EndpointCreateSerializer, EndpointSerializer

ENDPOINT_ID = OpenApiParameter("endpoint_id", ID_RANGE, OpenApiParameter.PATH)


def get_own_endpoint(request, endpoint_id: int) -> Endpoint:
    endpoint = Endpoint.objects.owned_by(request.user).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise exceptions.NotFound("Webhook endpoint not found.", code="endpoint_not_found")
    return endpoint


@extend_schema_view(
    get=extend_schema(
        operation_id="webhooks_list",
        summary="List your webhook endpoints",
        responses={200: EndpointSerializer(many=True)} | errors(401),
    ),
    post=extend_schema(
        operation_id="webhooks_create",
        summary="Register a webhook endpoint; its secret is shown once",
        request=EndpointCreateSerializer,
        responses={201: EndpointCreatedSerializer} | errors(400, 401),
    ),
)
class EndpointListCreateApi(GenericAPIView):
    pagination_class = SessionPagination
    serializer_class = EndpointSerializer

    def get(self, request):
        endpoints = self.paginate_queryset(Endpoint.objects.owned_by(request.user))
        return self.get_paginated_response(EndpointSerializer(endpoints, many=True).data)

    def post(self, request):
        serializer = EndpointCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(user=request.user, **serializer.validated_data)
        return Response(EndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        operation_id="webhooks_retrieve",
        summary="One webhook endpoint (without its secret)",
        parameters=[ENDPOINT_ID],
        responses={200: EndpointSerializer} | errors(401, 404),
    ),
    delete=extend_schema(
        operation_id="webhooks_destroy",
        summary="Remove a webhook endpoint and its pending deliveries",
        parameters=[ENDPOINT_ID],
        responses={204: None} | errors(401, 404),
    ),
)
class EndpointDetailApi(APIView):
    def get(self, request, endpoint_id):
        return Response(EndpointSerializer(get_own_endpoint(request, endpoint_id)).data)

    def delete(self, request, endpoint_id):
        services.endpoint_delete(endpoint=get_own_endpoint(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
