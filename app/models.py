"""Every table's model, imported in one place so that Alembic and the tests see the whole schema."""

from app.apikeys.models import ApiKey  # noqa: F401
from app.audit.models import AuditEvent  # noqa: F401
from app.benefits.models import Benefit, BenefitRevision, BenefitUsage, BenefitUse  # noqa: F401
from app.core.db import Base
from app.core.idempotency import IdempotencyKey  # noqa: F401
from app.customers.models import (  # noqa: F401
    Customer,
    CustomerActivityDaily,
    CustomerAumDaily,
    CustomerErasure,
    CustomerEvent,
    CustomerExternalId,
    Holding,
    HoldingBalance,
    HoldingImport,
    HoldingImportLine,
    RetierMark,
    RetierMarkSet,
)
from app.engagement.models import (  # noqa: F401
    Activity,
    ActivityParticipation,
    Community,
    CommunityActivityEvent,
    CommunityMembership,
    CommunityMembershipMove,
    Referral,
)
from app.feedback.models import (  # noqa: F401
    Complaint,
    ComplaintTransition,
    CustomerSatisfaction,
    FeedbackEvent,
    SurveyResponse,
)
from app.managers.models import (  # noqa: F401
    CareHoliday,
    ContactCadence,
    ManagerAssignment,
    ManagerAssignmentChange,
    ManagerAssignmentRun,
    ManagerContact,
    ManagerTask,
    RelationshipManager,
    WorklistRules,
)
from app.products.models import CatalogVersion, Product, ProductQuota, ProductQuotaConversion  # noqa: F401
from app.recommendations.learned.models import RankerModel  # noqa: F401
from app.recommendations.models import (  # noqa: F401
    CoHoldingStat,
    ContactRule,
    CustomerOfferState,
    ProductHoldingStat,
    PropensityStat,
    RecommendationFallback,
    RecommendationList,
)
from app.reports import models as reports_models  # noqa: F401  (report indexes, contribution margins, churn models)
from app.rules.models import CustomAttributeDefinition  # noqa: F401
from app.tiering.models import (  # noqa: F401
    TierAssignment,
    TierPolicy,
    TierPolicyChange,
    TierPolicyVersion,
    TierRun,
    TierTransition,
)
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription  # noqa: F401

metadata = Base.metadata
