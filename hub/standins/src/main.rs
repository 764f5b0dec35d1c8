//! `tradecast-standins`: runs a stand-in until Ctrl-C.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use tradecast_standins::stripe::{StripeStandin, StripeStandinConfig};
use tradecast_standins::telegram::{TelegramStandin, TelegramStandinConfig};

/// Strict local stand-ins for the services the Tradecast hub calls (tests and the demo).
#[derive(Debug, Parser)]
#[command(name = "tradecast-standins", version, about)]
struct Cli {
    #[command(subcommand)]
    service: Service,
}

#[derive(Debug, Subcommand)]
enum Service {
    /// Stripe: the API the hub calls, Checkout and Portal pages, signed webhooks.
    ///
    /// Prints its base URL, secret key and webhook signing secret; point the hub at it with
    /// `[stripe] api_base_url` and the secrets `stripe_secret_key` / `stripe_webhook_secret`.
    /// Test cards: 4242424242424242 (succeeds), 4000000000000341 (attaches, every charge
    /// fails), 4000000000000002 (declined at checkout).
    Stripe {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:12111")]
        listen: SocketAddr,
        /// Where to POST webhooks, e.g. http://127.0.0.1:7480/api/v1/billing/stripe/webhook.
        #[arg(long)]
        webhook_url: Option<String>,
        /// The secret key to accept (default: a fresh sk_test_…).
        #[arg(long, env = "STANDIN_STRIPE_SECRET_KEY")]
        secret_key: Option<String>,
        /// The webhook signing secret (default: a fresh whsec_…).
        #[arg(long, env = "STANDIN_STRIPE_WEBHOOK_SECRET")]
        webhook_secret: Option<String>,
    },
    /// Telegram: the Bot API the hub calls, with a simulated world behind it.
    ///
    /// Prints its base URL, bot token and username; point the hub at it with
    /// `[telegram] api_base_url` and `bot_username` and the secret `telegram_bot_token`. Without
    /// `--webhook-url` it waits for the hub's setWebhook (or getUpdates).
    Telegram {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:12112")]
        listen: SocketAddr,
        /// The bot token to accept (default: a fresh `<digits>:<secret>`).
        #[arg(long, env = "STANDIN_TELEGRAM_BOT_TOKEN")]
        token: Option<String>,
        /// The bot's username.
        #[arg(long, default_value = "tradecast_test_bot")]
        bot_username: String,
        /// Where to POST updates, e.g. http://127.0.0.1:7480/api/v1/telegram/webhook.
        #[arg(long)]
        webhook_url: Option<String>,
        /// The `X-Telegram-Bot-Api-Secret-Token` to send with them.
        #[arg(long, env = "STANDIN_TELEGRAM_WEBHOOK_SECRET")]
        webhook_secret: Option<String>,
    },
}

/// Ctrl-C, or SIGTERM on Unix (a service manager's stop; a background job ignores SIGINT).
async fn stopped() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match Cli::parse().service {
        Service::Stripe { listen, webhook_url, secret_key, webhook_secret } => {
            let sb = StripeStandin::start(StripeStandinConfig {
                listen,
                webhook_url: webhook_url.clone(),
                secret_key,
                webhook_secret,
                ..Default::default()
            })
            .await?;
            println!("base_url={}", sb.base_url());
            println!("secret_key={}", sb.secret_key());
            println!("webhook_secret={}", sb.webhook_secret());
            println!(
                "webhook_url={}",
                webhook_url.as_deref().unwrap_or("(none: events are recorded only)")
            );
            stopped().await?;
            sb.shutdown().await;
        }
        Service::Telegram { listen, token, bot_username, webhook_url, webhook_secret } => {
            let tg = TelegramStandin::start(TelegramStandinConfig {
                listen,
                token,
                bot_username,
                ..Default::default()
            })
            .await?;
            if let Some(url) = &webhook_url {
                tg.set_webhook(url.clone(), webhook_secret);
            }
            println!("base_url={}", tg.base_url());
            println!("token={}", tg.token());
            println!("bot_username={}", tg.bot_username());
            println!(
                "webhook_url={}",
                webhook_url.as_deref().unwrap_or("(none: waits for setWebhook or getUpdates)")
            );
            stopped().await?;
            tg.shutdown().await;
        }
    }
    Ok(())
}
