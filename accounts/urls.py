from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts import playground_views, views
from accounts.forms import EmailAuthenticationForm

app_name = "accounts"

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.sign_up, name="signup"),
    path("signup/sent/", views.sign_up_sent, name="signup_sent"),
    path("verify-email/resend/", views.verify_email_resend, name="verify_email_resend"),
    path("verify-email/<str:token>/", views.verify_email, name="verify_email"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html",
            authentication_form=EmailAuthenticationForm,
            redirect_authenticated_user=True,
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            template_name="accounts/password_reset.html",
            email_template_name="accounts/email/password_reset.txt",
            subject_template_name="accounts/email/password_reset_subject.txt",
            success_url=reverse_lazy("accounts:password_reset_done"),
        ),
        name="password_reset",
    ),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_sent.html"),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="accounts/password_reset_confirm.html",
            success_url=reverse_lazy("accounts:password_reset_complete"),
        ),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(template_name="accounts/password_reset_complete.html"),
        name="password_reset_complete",
    ),
    path("keys/", views.api_keys, name="api_keys"),
    path("webhooks/rotate/", views.webhook_secret_rotate_view, name="webhook_secret_rotate"),
    path("keys/<id:key_id>/revoke/", views.api_key_revoke_confirm, name="api_key_revoke"),
    path("keys/<id:key_id>/limits/", views.api_key_limits, name="api_key_limits"),
    path("credits/", views.credits, name="credits"),
    path("billing/", views.billing, name="billing"),
    path("billing/packs/<id:pack_id>/buy/", views.billing_buy, name="billing_buy"),
    path("billing/auto-top-up/", views.billing_autotopup, name="billing_autotopup"),
    path("billing/auto-top-up/off/", views.billing_autotopup_off, name="billing_autotopup_off"),
    path("billing/auto-top-up/resume/", views.billing_autotopup_resume, name="billing_autotopup_resume"),
    path("billing/alerts/", views.billing_alerts, name="billing_alerts"),
    path("playground/", playground_views.playground, name="playground"),
    path("generations/", views.generations, name="generations"),
    path("generations/<id:generation_id>/", views.generation, name="generation"),
    path("generations/<id:generation_id>/cancel/", views.generation_cancel, name="generation_cancel"),
]
