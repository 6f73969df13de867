"""Moroccan names (Latin and Arabic script), regions, schools and employers for the synthetic population."""

from __future__ import annotations

MALE_FIRST: tuple[tuple[str, str], ...] = (
    ("Mohamed", "محمد"), ("Ahmed", "أحمد"), ("Youssef", "يوسف"), ("Hassan", "حسن"), ("Abdellah", "عبد الله"),
    ("Omar", "عمر"), ("Rachid", "رشيد"), ("Said", "سعيد"), ("Mustapha", "مصطفى"), ("Khalid", "خالد"),
    ("Brahim", "إبراهيم"), ("Hamza", "حمزة"), ("Anas", "أنس"), ("Ayoub", "أيوب"), ("Mehdi", "المهدي"),
    ("Adil", "عادل"), ("Driss", "إدريس"), ("Larbi", "العربي"), ("Nabil", "نبيل"), ("Karim", "كريم"),
    ("Hicham", "هشام"), ("Abderrahim", "عبد الرحيم"), ("Ismail", "إسماعيل"), ("Othmane", "عثمان"),
    ("Zakaria", "زكرياء"), ("Soufiane", "سفيان"), ("Yassine", "ياسين"), ("Amine", "أمين"),
)
FEMALE_FIRST: tuple[tuple[str, str], ...] = (
    ("Fatima", "فاطمة"), ("Khadija", "خديجة"), ("Aicha", "عائشة"), ("Meryem", "مريم"), ("Zineb", "زينب"),
    ("Naima", "نعيمة"), ("Malika", "مليكة"), ("Saida", "سعيدة"), ("Hafsa", "حفصة"), ("Salma", "سلمى"),
    ("Imane", "إيمان"), ("Hanane", "حنان"), ("Latifa", "لطيفة"), ("Rachida", "رشيدة"), ("Samira", "سميرة"),
    ("Nadia", "نادية"), ("Asmae", "أسماء"), ("Ghizlane", "غزلان"), ("Houda", "هدى"), ("Soukaina", "سكينة"),
    ("Kawtar", "كوثر"), ("Wiam", "وئام"), ("Chaimae", "شيماء"), ("Oumaima", "أميمة"), ("Yasmine", "ياسمين"),
    ("Nora", "نورة"), ("Amal", "أمل"), ("Btissam", "ابتسام"),
)
LAST: tuple[tuple[str, str], ...] = (
    ("El Amrani", "العمراني"), ("Benali", "بنعلي"), ("Alaoui", "العلوي"), ("Idrissi", "الإدريسي"),
    ("Bennani", "بناني"), ("Tazi", "التازي"), ("El Fassi", "الفاسي"), ("Berrada", "برادة"),
    ("Chraibi", "الشرايبي"), ("Ouazzani", "الوزاني"), ("Ait Ouahmane", "آيت واحمان"), ("Boukhari", "البخاري"),
    ("Naciri", "الناصري"), ("Haddad", "الحداد"), ("El Mansouri", "المنصوري"), ("Zerouali", "الزروالي"),
    ("Lahlou", "لحلو"), ("Kettani", "الكتاني"), ("Sefrioui", "الصفريوي"), ("Benjelloun", "بنجلون"),
    ("Ait Benhaddou", "آيت بنحدو"), ("Amazigh", "أمازيغ"), ("El Ouardi", "الوردي"), ("Touimi", "التويمي"),
    ("Jabri", "الجابري"), ("Saidi", "السعيدي"), ("Filali", "الفيلالي"), ("Raji", "الراجي"),
    ("Bouzid", "بوزيد"), ("Ziani", "الزياني"), ("El Khattabi", "الخطابي"), ("Rifi", "الريفي"),
)

# (name, share of population, rural share, MASSAR letter)
REGIONS: tuple[tuple[str, float, float, str], ...] = (
    ("Tanger-Tétouan-Al Hoceïma", 0.105, 0.40, "T"),
    ("L'Oriental", 0.068, 0.33, "O"),
    ("Fès-Meknès", 0.125, 0.38, "F"),
    ("Rabat-Salé-Kénitra", 0.139, 0.30, "R"),
    ("Béni Mellal-Khénifra", 0.072, 0.50, "B"),
    ("Casablanca-Settat", 0.201, 0.26, "C"),
    ("Marrakech-Safi", 0.131, 0.54, "M"),
    ("Drâa-Tafilalet", 0.047, 0.64, "D"),
    ("Souss-Massa", 0.080, 0.42, "S"),
    ("Guelmim-Oued Noun", 0.012, 0.35, "G"),
    ("Laâyoune-Sakia El Hamra", 0.011, 0.06, "L"),
    ("Dakhla-Oued Ed-Dahab", 0.004, 0.20, "K"),
)

SCHOOL_KINDS: tuple[str, ...] = (
    "École primaire {n}", "Collège {n}", "Lycée {n}",
)
SCHOOL_NAMES: tuple[str, ...] = (
    "Ibn Khaldoun", "Al Massira", "Ibn Battouta", "Al Farabi", "Moulay Ismail", "Al Qods", "Ibn Rochd",
    "Abdelkrim El Khattabi", "Al Andalous", "Oued Eddahab", "Imam Malik", "Al Khawarizmi", "Anoual",
)
EMPLOYERS: tuple[str, ...] = (
    "Société Atlas Textile SARL", "Ferme Agricole Souss SA", "Transports Al Amal SARL", "BTP Chaouia SARL",
    "Conserverie Safi Océan SA", "Centre d'appels Rabat Services", "Boulangerie Al Baraka",
    "Marbrerie Tafilalet SARL", "Hôtel Palmeraie Marrakech SA", "Phosphates Services Khouribga SARL",
)
