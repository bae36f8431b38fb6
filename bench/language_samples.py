"""Short customer texts, the kind a hosting desk gets, in the languages it hears from.

Written for the benchmark of language detectors (`bench/language.py`): a first line of a
support mail is often all there is, and short text is where detectors differ.
"""

from __future__ import annotations

# ruff: noqa: RUF001 - Turkish has a dotless i

SHORT_TEXTS: tuple[tuple[str, str], ...] = (
    ("de", "Hallo, meine Webseite ist seit heute Morgen nicht erreichbar."),
    ("de", "Bitte senden Sie mir die Rechnung für November noch einmal zu."),
    ("de", "Ich möchte meinen Vertrag zum Monatsende kündigen."),
    ("de", "Das Passwort für mein Postfach funktioniert nicht mehr."),
    ("de", "Warum wurde mir der Betrag zweimal abgebucht?"),
    ("en", "Hello, my website has been down since this morning."),
    ("en", "Please send me the invoice for November again."),
    ("en", "I would like to cancel my contract at the end of the month."),
    ("en", "The password for my mailbox no longer works."),
    ("en", "Why was the amount charged twice?"),
    ("fr", "Bonjour, mon site web est inaccessible depuis ce matin."),
    ("fr", "Merci de me renvoyer la facture de novembre."),
    ("fr", "Je souhaite résilier mon contrat à la fin du mois."),
    ("fr", "Le mot de passe de ma boîte mail ne fonctionne plus."),
    ("fr", "Pourquoi le montant a-t-il été prélevé deux fois ?"),
    ("it", "Buongiorno, il mio sito web non è raggiungibile da stamattina."),
    ("it", "Vi prego di inviarmi di nuovo la fattura di novembre."),
    ("it", "Vorrei disdire il mio contratto alla fine del mese."),
    ("it", "La password della mia casella di posta non funziona più."),
    ("it", "Perché l'importo è stato addebitato due volte?"),
    ("tr", "Merhaba, web sitem bu sabahtan beri erişilemiyor."),
    ("tr", "Lütfen kasım ayı faturasını bana tekrar gönderin."),
    ("tr", "Sözleşmemi ay sonunda iptal etmek istiyorum."),
    ("tr", "Posta kutumun şifresi artık çalışmıyor."),
    ("tr", "Tutar neden iki kez tahsil edildi?"),
    ("pl", "Dzień dobry, moja strona internetowa nie działa od rana."),
    ("pl", "Proszę o ponowne przesłanie faktury za listopad."),
    ("pl", "Chciałbym wypowiedzieć umowę z końcem miesiąca."),
    ("pl", "Hasło do mojej skrzynki pocztowej już nie działa."),
    ("pl", "Dlaczego kwota została pobrana dwa razy?"),
    ("et", "Tere, minu veebileht ei ole täna hommikust saadik kättesaadav."),
    ("et", "Palun saatke mulle novembri arve uuesti."),
    ("et", "Soovin oma lepingu kuu lõpus lõpetada."),
    ("et", "Minu postkasti parool ei tööta enam."),
    ("et", "Miks võeti summa kaks korda maha?"),
    # A subject and a few words: all some customers write.
    ("de", "Rechnung falsch\nBitte prüfen."),
    ("de", "Kein Zugriff mehr auf mein Konto"),
    ("en", "Wrong invoice\nPlease check."),
    ("en", "Cannot log in anymore"),
    ("fr", "Facture erronée\nMerci de vérifier."),
    ("fr", "Impossible de me connecter"),
    ("it", "Fattura sbagliata\nGrazie."),
    ("it", "Non riesco ad accedere"),
    ("tr", "Yanlış fatura\nLütfen kontrol edin."),
    ("tr", "Hesabıma giremiyorum"),
    ("pl", "Błędna faktura\nProszę sprawdzić."),
    ("pl", "Nie mogę się zalogować"),
    ("et", "Vale arve\nPalun kontrollige."),
    ("et", "Ei saa sisse logida"),
)
